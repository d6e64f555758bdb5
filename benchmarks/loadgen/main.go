// loadgen: a closed-loop HTTP load generator for the benchmarks (standard library only).
//
// C workers each send POST requests back to back over keep-alive connections for a fixed
// duration after a warm-up, and the result is printed as one JSON object: requests per
// second, latency percentiles, and non-2xx / transport error counts. Written in Go so that
// the load generator takes little of the CPU the servers being measured share with it.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

type result struct {
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Seconds     float64 `json:"seconds"`
	RPS         float64 `json:"rps"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	Non2xx      int     `json:"non_2xx"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
}

func main() {
	url := flag.String("url", "", "target URL")
	bodyFile := flag.String("body", "", "file with the request body")
	contentType := flag.String("content-type", "application/json", "Content-Type header")
	concurrency := flag.Int("c", 16, "concurrent workers")
	duration := flag.Duration("d", 10*time.Second, "measured duration")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured warm-up")
	flag.Parse()
	body, err := os.ReadFile(*bodyFile)
	if err != nil || *url == "" {
		fmt.Fprintln(os.Stderr, "usage: loadgen -url URL -body FILE [-c N] [-d 10s]:", err)
		os.Exit(2)
	}
	client := &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConns: *concurrency * 2, MaxIdleConnsPerHost: *concurrency * 2, DisableCompression: true},
	}
	start := time.Now()
	measureFrom := start.Add(*warmup)
	stopAt := measureFrom.Add(*duration)
	var mu sync.Mutex
	var latencies []time.Duration
	non2xx, errs := 0, 0
	firstError := ""
	var wg sync.WaitGroup
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			localNon2xx, localErrs := 0, 0
			localFirst := ""
			for {
				t0 := time.Now()
				if t0.After(stopAt) {
					break
				}
				req, _ := http.NewRequest("POST", *url, bytes.NewReader(body))
				req.Header.Set("Content-Type", *contentType)
				resp, err := client.Do(req)
				measured := t0.After(measureFrom)
				if err != nil {
					if measured {
						localErrs++
						if localFirst == "" {
							localFirst = err.Error()
						}
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !measured {
					continue
				}
				if resp.StatusCode/100 != 2 {
					localNon2xx++
					if localFirst == "" {
						localFirst = fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, data)
					}
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			non2xx += localNon2xx
			errs += localErrs
			if firstError == "" {
				firstError = localFirst
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(measureFrom).Seconds()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	out := result{*concurrency, len(latencies), elapsed, float64(len(latencies)) / elapsed, pct(0.5), pct(0.99), non2xx, errs, firstError}
	json.NewEncoder(os.Stdout).Encode(out)
}
