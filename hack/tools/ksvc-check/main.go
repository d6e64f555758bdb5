// Command ksvc-check runs Knative Serving's own defaulting and validation (the code behind
// Knative's admission webhook) over Knative Services read from YAML streams, so rendered
// Services can be checked without a cluster running Knative.
//
// Usage:
//
//	ksvc-check [--features k=v,...] [--autoscaler k=v,...] [--defaults k=v,...] [FILE|-]...
//
// Exit status: 0 when every Knative object is valid, 1 when any is invalid, 2 on bad usage or
// unreadable input, 3 when the input held no Knative Serving object at all (see --allow-empty).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes.
const (
	exitValid   = 0
	exitInvalid = 1
	exitUsage   = 2
	exitEmpty   = 3
)

// version is stamped by hack/build-tools.sh with the knative.dev/serving module version.
var version = "unknown"

// recommendedFeatures are the config-features values our README tells cluster admins to set.
var recommendedFeatures = map[string]string{
	"kubernetes.podspec-nodeselector":            "enabled",
	"kubernetes.podspec-tolerations":             "enabled",
	"kubernetes.podspec-affinity":                "enabled",
	"kubernetes.podspec-runtimeclassname":        "enabled",
	"kubernetes.podspec-init-containers":         "enabled",
	"kubernetes.podspec-persistent-volume-claim": "enabled",
	"multi-container-probing":                    "enabled",
	"kubernetes.podspec-securitycontext":         "enabled",
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("ksvc-check", flag.ContinueOnError)
	flags.SetOutput(stderr)
	features := flags.String("features", "", "config-features overrides, key=value,... (applied over the recommended flags)")
	noRecommended := flags.Bool("no-recommended-features", false, "start from Knative's default config-features instead of the recommended flags")
	autoscaler := flags.String("autoscaler", "", "config-autoscaler values, key=value,...")
	defaults := flags.String("defaults", "", "config-defaults values, key=value,...")
	allowUnknown := flags.Bool("allow-unknown-fields", false, "ignore fields unknown to Knative's Go types (the apiserver would prune them)")
	allowEmpty := flags.Bool("allow-empty", false, "exit 0 when the input holds no Knative Serving object")
	showVersion := flags.Bool("version", false, "print the knative.dev/serving version and exit")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: ksvc-check [flags] [FILE|-]...   (no FILE: read standard input)")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintf(stdout, "ksvc-check knative.dev/serving %s\n", version)
		return exitValid
	}

	featureMap := map[string]string{}
	if !*noRecommended {
		for k, v := range recommendedFeatures {
			featureMap[k] = v
		}
	}
	autoscalerMap, defaultsMap := map[string]string{}, map[string]string{}
	for _, setting := range []struct {
		flag  string
		value string
		into  map[string]string
	}{{"--features", *features, featureMap}, {"--autoscaler", *autoscaler, autoscalerMap}, {"--defaults", *defaults, defaultsMap}} {
		if err := parseKeyValues(setting.value, setting.into); err != nil {
			fmt.Fprintf(stderr, "ksvc-check: %s: %v\n", setting.flag, err)
			return exitUsage
		}
	}
	checker, err := newChecker(featureMap, autoscalerMap, defaultsMap, !*allowUnknown)
	if err != nil {
		fmt.Fprintf(stderr, "ksvc-check: %v\n", err)
		return exitUsage
	}

	sources := flags.Args()
	if len(sources) == 0 {
		sources = []string{"-"}
	}
	checked, invalid := 0, 0
	for _, source := range sources {
		docs, err := readSource(source, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "ksvc-check: %v\n", err)
			return exitUsage
		}
		for _, doc := range docs {
			result := checker.check(doc)
			report(result, stdout, stderr)
			if result.skipped {
				continue
			}
			checked++
			if len(result.errors) > 0 {
				invalid++
			}
		}
	}

	switch {
	case invalid > 0:
		fmt.Fprintf(stderr, "ksvc-check: %d of %d Knative object(s) invalid\n", invalid, checked)
		return exitInvalid
	case checked == 0 && !*allowEmpty:
		fmt.Fprintln(stderr, "ksvc-check: no serving.knative.dev/v1 object found in the input (use --allow-empty to accept that)")
		return exitEmpty
	}
	return exitValid
}

// parseKeyValues adds "k=v,k2=v2" pairs to into.
func parseKeyValues(text string, into map[string]string) error {
	for _, pair := range strings.Split(text, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		key, value, ok := strings.Cut(pair, "=")
		if !ok || strings.TrimSpace(key) == "" {
			return fmt.Errorf("%q is not key=value", pair)
		}
		into[strings.TrimSpace(key)] = strings.TrimSpace(value)
	}
	return nil
}

// report prints one object's outcome: errors on stdout (prefixed by the object), notes on stderr.
func report(r result, stdout, stderr io.Writer) {
	if r.skipped {
		fmt.Fprintf(stderr, "%s: skipped: %s\n", r.label, r.note)
		return
	}
	for _, w := range r.warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", r.label, w)
	}
	if len(r.errors) == 0 {
		fmt.Fprintf(stdout, "%s: valid\n", r.label)
		return
	}
	sort.Strings(r.errors)
	for _, e := range r.errors {
		fmt.Fprintf(stdout, "%s: invalid: %s\n", r.label, e)
	}
}
