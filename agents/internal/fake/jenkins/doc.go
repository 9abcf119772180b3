// Package jenkins is a fake Jenkins REST API for tests, following Jenkins'
// remote access API: /api/json of the root, jobs, queue items and builds,
// /crumbIssuer/api/json (crumb bound to a JSESSIONID session cookie),
// createItem and config.xml (answered re-serialized, as Jenkins does),
// build and buildWithParameters (201 with a Location header naming the
// queue item; on a Multibranch Pipeline job a branch indexing, answered
// with a redirect and no queue item), queue items that become
// executables or are cancelled, and progressive console text
// (logText/progressiveText with X-Text-Size and X-More-Data). Faults are
// injected by wrapping the handler (Inject).
//
// It is for tests only; it may import other fakes, helpers, agents/config,
// agents/records and backends' wire types, never an implementation, a stage
// or a command.
package jenkins
