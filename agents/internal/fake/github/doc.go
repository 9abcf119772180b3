// Package github is a fake GitHub REST API server for tests: an
// httptest.Server that serves exactly the endpoints branchml's GitHub forge
// calls (git refs, commits, trees and blobs; repository contents; pulls
// list/create/update, reviews, the pulls of a commit; commit statuses; issue
// comments), in the shapes of
// GitHub's REST API (docs.github.com/rest, api.github.com version
// 2022-11-28), over an in-memory repository whose trees are really composed.
// It records every request and lets tests inject faults by wrapping its
// handler (see Fault).
//
// It is for tests only; it may import other fakes, helpers, agents/config,
// agents/records and backends' wire types, never an implementation, a stage
// or a command.
package github
