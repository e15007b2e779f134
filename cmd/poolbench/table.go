package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

func printTable(w io.Writer, all []*scenario) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\treq/s\tp50\tp95\tp99\tdials\terrors\tpool hits\tmisses\twaits\topen\t")
	for _, s := range all {
		pool := "-\t-\t-\t-\t"
		if st := s.stats; st != nil {
			pool = fmt.Sprintf("%d\t%d\t%d\t%d\t", st.Hits, st.Misses, st.WaitCount, st.OpenConns)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t%s\n", s.name, s.rps(),
			short(s.percentile(0.50)), short(s.percentile(0.95)), short(s.percentile(0.99)),
			s.dials, s.errors, pool)
	}
	tw.Flush()
	if s := firstErr(all); s != nil {
		fmt.Fprintf(w, "\nfirst error in %s: %v\n", s.name, s.firstErr)
	}
	dial, best := find(all, "dial", false), bestPool(all)
	if dial != nil && best != nil && dial.rps() > 0 && best.percentile(0.99) > 0 {
		fmt.Fprintf(w, "\n%s: %.1fx the throughput of a dial per request, p99 %.1fx lower\n",
			best.name, best.rps()/dial.rps(),
			float64(dial.percentile(0.99))/float64(best.percentile(0.99)))
	}
	if dial, pool := find(all, "dial", true), largestPool(all, true); dial != nil && pool != nil && dial.rps() > 0 {
		fmt.Fprintf(w, "TLS: %s req/s with a handshake per request, %s req/s from %s: %.0fx\n",
			thousands(dial.rps()), thousands(pool.rps()), pool.name, pool.rps()/dial.rps())
	}
	if lines := saturatedLines(all); len(lines) > 0 {
		fmt.Fprintf(w, "\nsaturated, %d clients on a few conns (what connpool's guarantees cost beside a plain channel pool):\n", saturatedClients)
		for _, l := range lines {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// printSizingNotes says what the sizing verdicts' columns mean and, when
// the uncapped pool collapsed, why.
func printSizingNotes(w io.Writer, res *sizingResult) {
	fmt.Fprintln(w)
	for _, l := range verdictLegend {
		fmt.Fprintf(w, "  %s\n", l)
	}
	if note := collapseNote(res); note != "" {
		fmt.Fprintf(w, "\n%s\n", note)
	}
}

// saturatedLines says, for each saturated pool size, connpool's
// throughput as a percentage of the channel pool's, with the peek off and
// on. It is empty when the saturated scenarios did not run.
func saturatedLines(all []*scenario) []string {
	var out []string
	for _, n := range saturatedSizes {
		ch, off, on := findSaturated(all, "chan", n, false), findSaturated(all, "saturated", n, true), findSaturated(all, "saturated", n, false)
		if ch == nil || off == nil || on == nil || ch.rps() == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%d conns: connpool serves %.0f%% of the channel pool's requests/s with the peek off, %.0f%% with it on (channel %.0f, peek off %.0f, peek on %.0f req/s)",
			n, 100*off.rps()/ch.rps(), 100*on.rps()/ch.rps(), ch.rps(), off.rps(), on.rps()))
	}
	return out
}

func findSaturated(all []*scenario, group string, size int, noPeek bool) *scenario {
	for _, s := range all {
		if s.group == group && s.poolSize == size && s.noPeek == noPeek {
			return s
		}
	}
	return nil
}

// short formats a latency; "-" for none, such as the percentile of a
// configuration that served nothing.
func short(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	}
}

func find(all []*scenario, group string, tls bool) *scenario {
	for _, s := range all {
		if s.group == group && s.tls == tls {
			return s
		}
	}
	return nil
}

func bestPool(all []*scenario) *scenario {
	var best *scenario
	for _, s := range all {
		if s.group == "pool" && !s.tls && (best == nil || s.rps() > best.rps()) {
			best = s
		}
	}
	return best
}

func firstErr(all []*scenario) *scenario {
	for _, s := range all {
		if s.firstErr != nil {
			return s
		}
	}
	return nil
}
