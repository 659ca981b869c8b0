package hub

import (
	"fmt"

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

// IDError says, for people, why id is not a valid channel id.
func IDError(id string) string {
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
