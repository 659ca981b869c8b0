package ws

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/messages-server/messages/ws/auth"
)

// Stats is the compact JSON of GET /stats, what the viewer's server panel
// plots: counters (the viewer derives rates from two readings), gauges,
// and the catch-up histogram's cumulative buckets (it derives a recent
// p99 the same way).
type Stats struct {
	// Time is when the stats were read, in Unix milliseconds.
	Time int64 `json:"time"`
	// Appended and Delivered count messages since the server started.
	Appended  float64 `json:"appended"`
	Delivered float64 `json:"delivered"`
	// Subscribers and ChannelsOpen are the current numbers.
	Subscribers  float64 `json:"subscribers"`
	ChannelsOpen float64 `json:"channels_open"`
	// PersistLag is the number of messages appended but not yet persisted.
	PersistLag int64 `json:"persist_lag"`
	// BufferedBytes is the memory messages hold, against MaxBufferedBytes.
	BufferedBytes    int64 `json:"buffered_bytes"`
	MaxBufferedBytes int64 `json:"max_buffered_bytes"`
	// Catchup is the catch-up duration histogram: upper bounds in seconds
	// and cumulative counts, the last bound +Inf written as 0 with the
	// total count.
	Catchup Histogram `json:"catchup"`
}

// Histogram is a cumulative histogram.
type Histogram struct {
	Le     []float64 `json:"le"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
}

// handleStats answers GET /stats; it needs the admin right when tokens are
// required, as /metrics does.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r, auth.Admin, "", false) {
		return
	}
	u := s.hub.Usage()
	st := Stats{
		Time:             time.Now().UnixMilli(),
		Appended:         metricValue(u.Appended),
		Delivered:        metricValue(s.m.delivered),
		Subscribers:      metricValue(u.Subscribers),
		ChannelsOpen:     metricValue(u.ChannelsOpen),
		PersistLag:       u.PersistLag,
		BufferedBytes:    u.BufferedBytes,
		MaxBufferedBytes: u.MaxBufferedBytes,
		Catchup:          histogramOf(u.Catchup),
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, st)
}

// metricValue reads a counter or a gauge. The hub's metrics are read
// here as the Prometheus collectors the server's Registry made them (see
// hub.Usage); any other kind reads as 0.
func metricValue(v any) float64 {
	m, ok := v.(prometheus.Metric)
	var d dto.Metric
	if !ok || m.Write(&d) != nil {
		return 0
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// histogramOf reads a histogram's cumulative buckets.
func histogramOf(v any) Histogram {
	m, ok := v.(prometheus.Metric)
	var d dto.Metric
	if !ok || m.Write(&d) != nil || d.Histogram == nil {
		return Histogram{}
	}
	var out Histogram
	for _, b := range d.Histogram.Bucket {
		out.Le = append(out.Le, b.GetUpperBound())
		out.Counts = append(out.Counts, b.GetCumulativeCount())
	}
	out.Count = d.Histogram.GetSampleCount()
	return out
}
