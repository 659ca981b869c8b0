package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestSeveralURLs(t *testing.T) {
	c, err := parseFlags([]string{"-scenario", "fanout", "-clients", "7",
		"-url", "http://127.0.0.1:3001, http://127.0.0.1:3002/,http://127.0.0.1:3003"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://127.0.0.1:3001", "http://127.0.0.1:3002", "http://127.0.0.1:3003"}
	if !slices.Equal(c.URLs, want) || c.URL != want[0] {
		t.Fatalf("URLs %q, URL %q; want %q and the first", c.URLs, c.URL, want)
	}
	var got []string
	for k := range 4 {
		got = append(got, c.readerURL(k))
	}
	if !slices.Equal(got, append(want, want[0])) {
		t.Fatalf("readers' URLs %q: want them in turn", got)
	}
	if n := c.readersOnFirst(); n != 3 { // readers 0, 3 and 6 of 7
		t.Fatalf("readersOnFirst = %d, want 3", n)
	}
	_, err = parseFlags([]string{"-url", "http://127.0.0.1:3001,ftp://x"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"ftp://x"`) {
		t.Fatalf("a bad URL in the list: %v, want an error naming it", err)
	}
}
