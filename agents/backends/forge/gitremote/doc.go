// Package gitremote is the embedded forge: a plain git remote (a bare
// repository on disk, a file:// URL, or any URL the git CLI can push to),
// with pull requests, commit statuses and comments kept as JSON records in a
// directory beside it ("<remote>.branchml/").
//
// It drives the git CLI (git >= 2.38, for merge-tree --write-tree) rather
// than go-git: the CLI's receive-pack updates refs under git's own lock files
// with a compare-and-swap on the old value, which is what makes concurrent
// write-backs from several processes safe. Every operation works in a private
// temporary repository (objects borrowed from a local remote through
// alternates), builds trees with a private index and plumbing commands, and
// pushes with --force-with-lease on the tip it started from; it never touches
// a user's checkout.
//
// As an implementation of the forge backend it imports only packages of that
// concern (agents/backends/forge/...), agents/records, agents/config and
// helpers; never a stage, a command or another concern.
package gitremote
