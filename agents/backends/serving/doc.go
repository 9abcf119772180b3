// Package serving is the interface to what serves models: a stable and a
// canary variant of one TF Serving model with a traffic split between them.
// Implementations: agents/backends/serving/local (processes behind a weighted
// gateway) and agents/backends/serving/kubernetes (two Deployments behind one
// Service); agents/backends/serving/servingfactory picks one by name.
//
// As part of the serving backend it imports only packages of that concern
// (agents/backends/serving/...), agents/records, agents/config and helpers;
// never a stage, a command or another concern.
package serving
