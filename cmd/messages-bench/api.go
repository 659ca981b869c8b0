package main

// The channels API calls of the bench, and the errors of HTTP answers.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// apiError is an HTTP API error answer.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Message) }

// doJSON sends a request and decodes a JSON answer into out (if not nil).
func doJSON(ctx context.Context, c *http.Client, method, u, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(clip(b)))
		}
		return &apiError{Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
	}
	return nil
}

// createChannel creates channel id, with a generator when freq > 0 that
// starts once startWhen subscribers are attached (at once if 0).
func createChannel(ctx context.Context, c *http.Client, baseURL, id string, freq float64, max int64, startWhen int) error {
	body := map[string]any{"id": id}
	if freq > 0 {
		body["generator"] = map[string]any{"freq": freq, "max": max, "start_when_subscribers": startWhen}
	}
	b, _ := json.Marshal(body)
	if err := doJSON(ctx, c, http.MethodPost, baseURL+"/channels", "application/json", b, nil); err != nil {
		return fmt.Errorf("create channel %s: %w", id, err)
	}
	return nil
}

// closeChannel ends channel id and returns its last seq. It runs even when
// ctx is done (bounded by its own timeout), so that a stopped run leaves no
// channel open.
func closeChannel(ctx context.Context, c *http.Client, baseURL, id string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var out struct {
		LastSeq int64 `json:"last_seq"`
	}
	if err := doJSON(ctx, c, http.MethodPost, baseURL+"/channels/"+id+"/close", "", nil, &out); err != nil {
		return 0, fmt.Errorf("close channel %s: %w", id, err)
	}
	return out.LastSeq, nil
}

// get sends GET u from the next source, counted as a dial, and returns
// the answer if it is 200 OK; the caller closes its body.
func (b *bench) get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	b.st.dials.Add(1)
	resp, err := b.src.next().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	return resp, nil
}

// statusError is the error of an answer with an unexpected status: the
// status and the start of its body.
func statusError(resp *http.Response) error {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(msg)))
}
