// Package github is the forge on GitHub (or GitHub Enterprise) through
// go-github v62: files through the contents API, write-backs through the git
// data API (blobs, a tree on the tip's tree, a commit, a fast-forward ref
// update re-applied when the branch moved), pull requests, commit statuses
// and issue comments. The token comes from GITHUB_TOKEN or GITHUB_TOKEN_FILE
// (agents/secrets) and is masked in every error and log line.
package github
