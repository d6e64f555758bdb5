// Command cronrobfig answers cron questions the way Knative's PingSource does, with robfig/cron
// v3.0.1 itself: the parser options of pkg/adapter/mtping and pkg/apis/sources/v1/ping_validation.go,
// `@every` refused as that validation refuses it, and the timezone as a "CRON_TZ=<zone> " prefix.
//
// Input, one case a line, tab-separated: cron, start (RFC 3339), count, timezone (may be empty).
// Output, one line a case: the next `count` fire times in UTC (RFC 3339, space-separated), each
// strictly after the one before; "NEVER" where robfig gives up (5 years); "ERR <message>" where
// PingSource refuses the schedule. Run with TZ=UTC: without a timezone robfig uses time.Local.
// tests/unit/test_cron_robfig.py runs it; by hand: printf '0 9 * * 7\t2026-11-28T12:00:00Z\t2\t\n' | go run .
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

func main() {
	parser := cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		parts := strings.Split(in.Text(), "\t")
		if len(parts) != 4 {
			fmt.Fprintf(out, "ERR bad input line %q\n", in.Text())
			continue
		}
		expr, start, n, tz := parts[0], parts[1], parts[2], parts[3]
		if strings.Contains(expr, "@every") {
			fmt.Fprintln(out, "ERR unsupported descriptor @every")
			continue
		}
		schedule := expr
		if tz != "" {
			schedule = "CRON_TZ=" + tz + " " + expr
		}
		s, err := parser.Parse(schedule)
		if err != nil {
			fmt.Fprintf(out, "ERR %v\n", err)
			continue
		}
		t, err := time.Parse(time.RFC3339, start)
		if err != nil {
			fmt.Fprintf(out, "ERR bad start %q\n", start)
			continue
		}
		count, _ := strconv.Atoi(n)
		times := []string{}
		for i := 0; i < count; i++ {
			t = s.Next(t)
			if t.IsZero() {
				times = append(times, "NEVER")
				break
			}
			times = append(times, t.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(out, strings.Join(times, " "))
	}
}
