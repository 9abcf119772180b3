// Package forges picks the forge implementation that branchml.yaml's
// backends.forge names: "local" (agents/backends/forge/gitremote, the default) or
// "github" (agents/backends/forge/github).
//
// As the factory of the forge backend it imports only packages of that
// concern (agents/backends/forge/...), agents/records, agents/config and
// helpers; never a stage, a command or another concern.
package forgefactory
