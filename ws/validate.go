package ws

import (
	"crypto/rand"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/messages-server/messages/persist"
)

// ValidID reports whether id is a valid channel id: 1–128 bytes of
// [A-Za-z0-9._:-], other than "." and "..", which name no channel in a path
// (/channels/.. is /).
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > persist.MaxChannelIDBytes || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func idError(id string) string {
	if len(id) > persist.MaxChannelIDBytes {
		return fmt.Sprintf("channel id is %d bytes long; at most %d are allowed", len(id), persist.MaxChannelIDBytes)
	}
	if id == "" {
		return "channel id is missing"
	}
	if id == "." || id == ".." {
		return fmt.Sprintf("channel id %q is not allowed: it cannot be used in a URL path", id)
	}
	return fmt.Sprintf("channel id %q has characters outside [A-Za-z0-9._:-]", id)
}

// newID makes a random channel id.
func newID() string { return strings.ToLower(rand.Text()) }

func parseGenerator(freqStr, maxStr string) (*persist.Generator, error) {
	g := &persist.Generator{Freq: 20, Max: 50}
	if freqStr != "" {
		f, err := strconv.ParseFloat(freqStr, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < MinFreq || f > MaxFreq {
			return nil, &BadRequestError{Msg: fmt.Sprintf("freq %q must be a number of lines per second in [%v, %d]", freqStr, MinFreq, MaxFreq)}
		}
		g.Freq = f
	}
	if maxStr != "" {
		n, err := strconv.ParseInt(maxStr, 10, 64)
		if err != nil || n < 1 || n > MaxLines {
			return nil, &BadRequestError{Msg: fmt.Sprintf("max %q must be an integer in [1, %d]", maxStr, MaxLines)}
		}
		g.Max = n
	}
	return g, nil
}

func validGenerator(g *persist.Generator) error {
	if math.IsNaN(g.Freq) || math.IsInf(g.Freq, 0) || g.Freq < MinFreq || g.Freq > MaxFreq {
		return &BadRequestError{Msg: fmt.Sprintf("generator.freq %v must be in [%v, %d]", g.Freq, MinFreq, MaxFreq)}
	}
	if g.Max < 1 || g.Max > MaxLines {
		return &BadRequestError{Msg: fmt.Sprintf("generator.max %d must be in [1, %d]", g.Max, MaxLines)}
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
		return 0, &BadRequestError{Msg: fmt.Sprintf("from %q must be a non-negative integer (the last seq you already have)", v)}
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
		return 0, &BadRequestError{Msg: fmt.Sprintf("limit %q must be an integer in [1, 1000]", v)}
	}
	return n, nil
}

// pathID returns the {id} path value, or writes a 400 and returns false.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !ValidID(id) {
		writeError(w, http.StatusBadRequest, idError(id))
		return "", false
	}
	return id, true
}
