package backoff

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestExponential(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max time.Duration
		want     []time.Duration
	}{
		{"doubles to the cap", 10, 50, []time.Duration{10, 20, 40, 50, 50}},
		{"cap reached exactly", 1, 4, []time.Duration{1, 2, 4, 4}},
		{"max below min", 30, 5, []time.Duration{30, 30, 30}},
		{"min equals max", 7, 7, []time.Duration{7, 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Exponential{Min: tc.min, Max: tc.max}
			var got []time.Duration
			for range tc.want {
				got = append(got, e.Next())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("waits %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(t.Context(), time.Nanosecond) {
		t.Error("Sleep of a nanosecond reported its context done")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep with a done context reported that the hour passed")
	}
}
