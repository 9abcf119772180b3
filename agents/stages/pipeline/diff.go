package pipeline

import (
	"fmt"
	"strings"
)

// maxDiffLines bounds the line-by-line diff (quadratic in lines).
const maxDiffLines = 20000

// Diff returns a unified-style line diff of a and b ("" when equal):
// "--- fromName", "+++ toName", then every line prefixed by " ", "-" or "+"
// with unchanged runs longer than 6 lines elided as "@@ … @@".
func Diff(a, b, fromName, toName string) string {
	if a == b {
		return ""
	}
	x, y := lines(a), lines(b)
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", fromName, toName)
	if len(x)*len(y) > maxDiffLines*maxDiffLines/100 {
		fmt.Fprintf(&sb, "@@ too large to diff: %d lines against %d @@\n", len(x), len(y))
		return sb.String()
	}
	// lcs[i][j] is the LCS length of x[i:] and y[j:].
	lcs := make([][]int32, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var same []string
	flush := func() {
		if len(same) > 6 {
			for _, l := range same[:3] {
				sb.WriteString(" " + l + "\n")
			}
			fmt.Fprintf(&sb, "@@ %d unchanged lines @@\n", len(same)-6)
			same = same[len(same)-3:]
		}
		for _, l := range same {
			sb.WriteString(" " + l + "\n")
		}
		same = nil
	}
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			same = append(same, x[i])
			i, j = i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			flush()
			sb.WriteString("-" + x[i] + "\n")
			i++
		default:
			flush()
			sb.WriteString("+" + y[j] + "\n")
			j++
		}
	}
	flush()
	return sb.String()
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}
