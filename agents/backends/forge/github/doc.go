// Package github is the forge on GitHub (or GitHub Enterprise) through
// go-github v62: files through the contents API, write-backs through the git
// data API (blobs, a tree on the tip's tree, a commit, a fast-forward ref
// update re-applied when the branch moved), pull requests, commit statuses
// and issue comments. The token comes from GITHUB_TOKEN or GITHUB_TOKEN_FILE
// (agents/internal/secrets) and is masked in every error and log line.
//
// As an implementation of the forge backend it imports only packages of that
// concern (agents/backends/forge/...), agents/records, agents/config and
// helpers; never a stage, a command or another concern.
package github
