package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"html/template"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// reportFlags are the flags of the HTML report.
type reportFlags struct {
	Report string `json:"report,omitempty"`
}

func (f *reportFlags) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&f.Report, "report", "", "write the run as one self-contained HTML `file` (configuration, verdict, latency distributions, throughput, server CPU and memory over time, as SVG plots)")
}

// MarshalJSON writes the configuration with its durations in seconds:
// a field "x_ns" holding nanoseconds becomes "x_seconds".
func (c config) MarshalJSON() ([]byte, error) {
	type plain config // without this method
	b, err := json.Marshal(plain(c))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	for k, v := range m {
		if name, ok := strings.CutSuffix(k, "_ns"); ok {
			if n, ok := v.(json.Number); ok {
				f, _ := n.Float64()
				delete(m, k)
				m[name+"_seconds"] = f / 1e9
			}
		}
	}
	return json.Marshal(m)
}

// plotPoint is one point of a plot.
type plotPoint struct{ X, Y float64 }

// plotSeries is one line of a plot.
type plotSeries struct {
	Name   string
	Points []plotPoint
}

// plot is one SVG plot of the report.
type plot struct {
	Key, Title, XLabel, YLabel string
	LogX                       bool
	Series                     []plotSeries
}

// writeReport writes the run as an HTML file at path.
func (b *bench) writeReport(path string, m *monitor) error {
	var plots []plot
	cdf := plot{Key: "latency", Title: "Latency distribution (CDF)", XLabel: "ms (log)", YLabel: "fraction of messages", LogX: true}
	for _, k := range []struct {
		name string
		l    *latencies
	}{{"live", b.st.live}, {"catchup", b.st.catchup}, {"end_to_end", b.st.e2e}, {"append", b.st.append},
		{"create", b.st.create}} {
		if pts := k.l.cdf(); len(pts) > 0 {
			cdf.Series = append(cdf.Series, plotSeries{Name: k.name, Points: pts})
		}
	}
	plots = append(plots, cdf, b.throughputPlot())
	m.mu.Lock()
	samples := slices.Clone(m.samples)
	m.mu.Unlock()
	cpu := plot{Key: "server-cpu", Title: "Server CPU", XLabel: "s", YLabel: "cores"}
	rss := plot{Key: "server-memory", Title: "Server memory", XLabel: "s", YLabel: "MiB"}
	var cs, rs, hs plotSeries
	cs.Name, rs.Name, hs.Name = "cpu", "rss", "heap in use"
	for i, s := range samples {
		x := s.at.Sub(b.st.start).Seconds()
		rs.Points = append(rs.Points, plotPoint{x, s.rss / (1 << 20)})
		hs.Points = append(hs.Points, plotPoint{x, s.heap / (1 << 20)})
		if i > 0 {
			if dt := s.at.Sub(samples[i-1].at).Seconds(); dt > 0 {
				cs.Points = append(cs.Points, plotPoint{x, (s.cpu - samples[i-1].cpu) / dt})
			}
		}
	}
	cpu.Series, rss.Series = []plotSeries{cs}, []plotSeries{rs, hs}
	plots = append(plots, cpu, rss)

	cfg, _ := json.MarshalIndent(b.cfg, "", "  ")
	var table bytes.Buffer
	b.res.writeTable(&table)
	data := struct {
		R       *result
		Verdict string
		OK      bool
		Config  string
		Table   string
		Plots   []template.HTML
		When    string
	}{R: b.res, Config: string(cfg), Table: table.String(), When: b.st.start.UTC().Format(time.RFC3339)}
	data.OK = b.res.Inconsistencies == 0 && b.res.Failures == 0 && b.res.ChannelFailures == 0
	data.Verdict = fmt.Sprintf("PASS: %d clients, every one got exactly what was sent", b.res.Completed)
	if !data.OK {
		data.Verdict = fmt.Sprintf("FAIL: %d inconsistencies, %d failed clients, %d failed channels",
			b.res.Inconsistencies, b.res.Failures, b.res.ChannelFailures)
	}
	for _, p := range plots {
		data.Plots = append(data.Plots, p.svg())
	}
	var out bytes.Buffer
	if err := reportPage.Execute(&out, data); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// throughputPlot is the deliveries per second over the run, from the
// stats' buckets.
func (b *bench) throughputPlot() plot {
	p := plot{Key: "throughput", Title: "Throughput", XLabel: "s", YLabel: "deliveries/s"}
	per := int(time.Second / bucketWidth)
	last := int(time.Duration(b.res.Seconds*float64(time.Second)) / bucketWidth)
	var s plotSeries
	s.Name = "deliveries/s"
	for i := 0; i+per <= min(last+per, len(b.st.timeline)); i += per {
		var n int64
		for j := i; j < i+per; j++ {
			n += b.st.timeline[j].Load()
		}
		s.Points = append(s.Points, plotPoint{float64(i+per) * bucketWidth.Seconds(), float64(n)})
	}
	p.Series = []plotSeries{s}
	return p
}

// cdf is the latency distribution as points (ms, fraction at or below),
// empty without samples.
func (l *latencies) cdf() []plotPoint {
	h := l.merged()
	if h.TotalCount() == 0 {
		return nil
	}
	var pts []plotPoint
	for _, q := range []float64{0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.9, 99.99, 100} {
		pts = append(pts, plotPoint{math.Max(0.001, float64(h.ValueAtQuantile(q))/1000), q / 100})
	}
	return pts
}

// Plot geometry, in SVG user units.
const (
	plotW, plotH                         = 560, 260
	padLeft, padRight, padTop, padBottom = 56, 16, 44, 36
	innerW, innerH                       = plotW - padLeft - padRight, plotH - padTop - padBottom
)

var seriesColors = []string{"#2459d6", "#d6602f", "#13803d", "#8a3fd1", "#a15c05"}

// svg draws p with its axes, ticks and legend.
func (p plot) svg() template.HTML {
	x0, x1, y1 := math.Inf(1), math.Inf(-1), 0.0
	n := 0
	for _, s := range p.Series {
		for _, pt := range s.Points {
			x := pt.X
			if p.LogX {
				x = math.Log10(x)
			}
			x0, x1, y1 = math.Min(x0, x), math.Max(x1, x), math.Max(y1, pt.Y)
			n++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg data-plot="%s" data-points="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		template.HTMLEscapeString(p.Key), n, plotW, plotH, template.HTMLEscapeString(p.Title))
	fmt.Fprintf(&b, `<text x="%d" y="16" class="title">%s</text>`, padLeft, template.HTMLEscapeString(p.Title))
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="none">no data</text></svg>`, plotW/2-30, plotH/2)
		return template.HTML(b.String())
	}
	if x1 == x0 {
		x1 = x0 + 1
	}
	if y1 == 0 {
		y1 = 1
	}
	y1 = niceCeil(y1)
	sx := func(x float64) float64 {
		if p.LogX {
			x = math.Log10(x)
		}
		return padLeft + (x-x0)/(x1-x0)*innerW
	}
	sy := func(y float64) float64 { return padTop + innerH - y/y1*innerH }
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" class="frame"/>`, padLeft, padTop, innerW, innerH)
	for i := 0; i <= 4; i++ {
		y := y1 * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="grid"/><text x="%d" y="%.1f" class="tick" text-anchor="end">%s</text>`,
			padLeft, padLeft+innerW, sy(y), sy(y), padLeft-4, sy(y)+4, short(y))
	}
	for i := 0; i <= 5; i++ {
		x := x0 + (x1-x0)*float64(i)/5
		v := x
		if p.LogX {
			v = math.Pow(10, x)
		}
		px := padLeft + (x-x0)/(x1-x0)*innerW
		anchor := "middle"
		if i == 5 {
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="tick" text-anchor="%s">%s</text>`, px, padTop+innerH+14, anchor, short(v))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">%s</text>`, padLeft+innerW, plotH-4, template.HTMLEscapeString(p.XLabel))
	fmt.Fprintf(&b, `<text x="8" y="%d" class="axis">%s</text>`, padTop-8, template.HTMLEscapeString(p.YLabel))
	for i, s := range p.Series {
		color := seriesColors[i%len(seriesColors)]
		var pts []string
		for _, pt := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(pt.X), sy(pt.Y)))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`, strings.Join(pts, " "), color)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" class="legend">%s</text>`,
			plotW-padRight-130, padTop+6+i*16, color, plotW-padRight-115, padTop+15+i*16, template.HTMLEscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// short formats a tick value.
func short(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	case a >= 1 || a == 0:
		return fmt.Sprintf("%.3g", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

// reportPage is the HTML report: everything inline, nothing fetched.
var reportPage = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>messages-bench {{.R.Scenario}} · {{.When}}</title>
<style>
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1rem 1.5rem; color: #1b2130; background: #f4f6f9; }
h1 { font-size: 1.3rem; margin: .2rem 0; } h2 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
.verdict { font-weight: 700; padding: .5rem .8rem; border-radius: 8px; display: inline-block; }
.pass { background: #e3f5ea; color: #13803d; } .fail { background: #fde7e7; color: #c42323; }
pre { background: #fff; border: 1px solid #dde2ea; border-radius: 8px; padding: .7rem .9rem; overflow-x: auto; font: 12.5px/1.45 ui-monospace, Menlo, Consolas, monospace; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 1rem; }
svg { width: 100%; height: auto; background: #fff; border: 1px solid #dde2ea; border-radius: 8px; }
svg .title { font-weight: 700; font-size: 13px; fill: #1b2130; } svg .tick, svg .axis, svg .legend { font-size: 11px; fill: #5d6677; }
svg .frame { fill: none; stroke: #dde2ea; } svg .grid { stroke: #eceff4; } svg .none { fill: #5d6677; }
</style></head><body>
<h1>messages-bench: {{.R.Scenario}}</h1>
<p>Started {{.When}}, {{printf "%.1f" .R.Seconds}} s.</p>
<p class="verdict {{if .OK}}pass{{else}}fail{{end}}">{{.Verdict}}</p>
<h2>Plots</h2>
<div class="plots">{{range .Plots}}{{.}}{{end}}</div>
<h2>Result</h2>
<pre>{{.Table}}</pre>
<h2>Configuration</h2>
<pre>{{.Config}}</pre>
</body></html>
`))
