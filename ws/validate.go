package ws

import (
	"crypto/rand"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
)

// newID makes a random channel id.
func newID() string { return strings.ToLower(rand.Text()) }

func parseGenerator(freqStr, maxStr string) (*persist.Generator, error) {
	g := &persist.Generator{Freq: 20, Max: 50}
	if freqStr != "" {
		f, err := strconv.ParseFloat(freqStr, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < hub.MinFreq || f > hub.MaxFreq {
			return nil, &hub.BadRequestError{Msg: fmt.Sprintf("freq %q must be a number of lines per second in [%v, %d]", freqStr, hub.MinFreq, hub.MaxFreq)}
		}
		g.Freq = f
	}
	if maxStr != "" {
		n, err := strconv.ParseInt(maxStr, 10, 64)
		if err != nil || n < 1 || n > hub.MaxLines {
			return nil, &hub.BadRequestError{Msg: fmt.Sprintf("max %q must be an integer in [1, %d]", maxStr, hub.MaxLines)}
		}
		g.Max = n
	}
	return g, nil
}

func validGenerator(g *persist.Generator) error {
	if math.IsNaN(g.Freq) || math.IsInf(g.Freq, 0) || g.Freq < hub.MinFreq || g.Freq > hub.MaxFreq {
		return &hub.BadRequestError{Msg: fmt.Sprintf("generator.freq %v must be in [%v, %d]", g.Freq, hub.MinFreq, hub.MaxFreq)}
	}
	if g.Max < 1 || g.Max > hub.MaxLines {
		return &hub.BadRequestError{Msg: fmt.Sprintf("generator.max %d must be in [1, %d]", g.Max, hub.MaxLines)}
	}
	return nil
}

// parseFrom parses a from parameter: the last seq the client already has.
func parseFrom(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, &hub.BadRequestError{Msg: fmt.Sprintf("from %q must be a non-negative integer (the last seq you already have)", v)}
	}
	return n, nil
}

// parseLimit parses a page size: 1–1000, default 100.
func parseLimit(v string) (int, error) {
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, &hub.BadRequestError{Msg: fmt.Sprintf("limit %q must be an integer in [1, 1000]", v)}
	}
	return n, nil
}

// pathID returns the {id} path value, or writes a 400 and returns false.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !hub.ValidID(id) {
		writeError(w, http.StatusBadRequest, hub.IDError(id))
		return "", false
	}
	return id, true
}
