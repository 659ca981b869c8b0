package auth

import (
	"testing"
)

func TestValidPattern(t *testing.T) {
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"room-1", true},
		{"room-*", true},
		{"*", true},
		{"a:b.c_d-e", true},
		{"", false},
		{"*room", false},
		{"ro*om", false},
		{"room**", false},
		{"**", false},
	} {
		if err := ValidPattern(tc.p); (err == nil) != tc.ok {
			t.Errorf("ValidPattern(%q) = %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, channel string
		want             bool
	}{
		{"*", "anything", true},
		{"*", "", true},
		{"room-1", "room-1", true},
		{"room-1", "room-10", false},
		{"room-1", "room-", false},
		{"room-1", "Room-1", false},
		{"room-*", "room-1", true},
		{"room-*", "room-", true},
		{"room-*", "room", false},
		{"room-*", "xroom-1", false},
		{"room-*", "", false},
		{"room-1", "", false},
	} {
		if got := MatchPattern(tc.pattern, tc.channel); got != tc.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", tc.pattern, tc.channel, got, tc.want)
		}
	}
}

func TestClaimsAllows(t *testing.T) {
	reader := &Claims{Subscribe: []string{"news-*", "chat"}}
	writer := &Claims{Publish: []string{"jobs-*"}, Subscribe: []string{"*"}}
	anyWriter := &Claims{Publish: []string{"*"}}
	admin := &Claims{Admin: true}
	none := &Claims{}
	for _, tc := range []struct {
		name    string
		c       *Claims
		right   Right
		channel string
		want    bool
	}{
		{"reader reads a prefix", reader, Subscribe, "news-1", true},
		{"reader reads an exact id", reader, Subscribe, "chat", true},
		{"reader cannot read another", reader, Subscribe, "chat2", false},
		{"reader cannot publish", reader, Publish, "news-1", false},
		{"reader is no admin", reader, Admin, "", false},
		{"writer publishes", writer, Publish, "jobs-7", true},
		{"writer reads all", writer, Subscribe, "x", true},
		{"writer cannot publish elsewhere", writer, Publish, "news-1", false},
		{"writer cannot create an unnamed channel", writer, Publish, "", false},
		{"star creates an unnamed channel", anyWriter, Publish, "", true},
		{"star is no admin", anyWriter, Admin, "", false},
		{"admin reads", admin, Subscribe, "x", true},
		{"admin publishes", admin, Publish, "", true},
		{"admin lists", admin, Admin, "", true},
		{"empty claims", none, Subscribe, "x", false},
		{"unknown right", writer, Right(99), "jobs-1", false},
	} {
		if got := tc.c.Allows(tc.right, tc.channel); got != tc.want {
			t.Errorf("%s: Allows(%v, %q) = %v, want %v", tc.name, tc.right, tc.channel, got, tc.want)
		}
	}
}

func TestClaimsValidate(t *testing.T) {
	for _, tc := range []struct {
		c  Claims
		ok bool
	}{
		{Claims{}, true},
		{Claims{Publish: []string{"a", "b*"}, Subscribe: []string{"*"}}, true},
		{Claims{Publish: []string{""}}, false},
		{Claims{Subscribe: []string{"a*b"}}, false},
	} {
		if err := tc.c.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tc.c, err, tc.ok)
		}
	}
}

func TestRightString(t *testing.T) {
	for r, want := range map[Right]string{Subscribe: "subscribe", Publish: "publish", Admin: "admin", 0: "Right(0)"} {
		if got := r.String(); got != want {
			t.Errorf("Right(%d).String() = %q, want %q", int(r), got, want)
		}
	}
}
