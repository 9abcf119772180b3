package jenkins

import (
	"crypto/sha512"
	"encoding/hex"
	"strings"
)

// EncodeBranch encodes a branch name into the item name a Multibranch
// Pipeline job gives its branch job, as branch-api's NameEncoder.encode
// does: "#", "%", "/", "?", "[", "]" and "\" are percent-encoded
// ("feature/x" -> "feature%2Fx", "fix#12" -> "fix%2312"); the empty name is
// "%00", "." is "%2E" and ".." is "%2E.".
func EncodeBranch(branch string) string {
	switch branch {
	case "":
		return "%00"
	case ".":
		return "%2E"
	case "..":
		return "%2E."
	}
	return branchEncoder.Replace(branch)
}

var branchEncoder = strings.NewReplacer("#", "%23", "%", "%25", "/", "%2F", "?", "%3F", "[", "%5B", "]", "%5D", `\`, "%5C")

func sha512Hex(b []byte) string {
	sum := sha512.Sum512(b)
	return hex.EncodeToString(sum[:])
}
