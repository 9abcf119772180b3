// Package factory picks the serving backend named by
// config.Backends.Serving.Type: "local" or "kubernetes".
//
// As the factory of the serving backend it imports only packages of that
// concern (agents/backends/serving/...), agents/records, agents/config and
// helpers; never a stage, a command or another concern.
package servingfactory
