// Package stagerun runs an agent command the way the shared library's
// branchmlAgent step does (vars/branchmlAgent.groovy): the parameters go into
// a JSON file passed with --params, the agent writes --result and, on
// failure, --error-details, and the caller reads both back. The quickstart
// uses it so that every stage runs through the same entry point and with the
// same parameters as under Jenkins.
//
// As a command package it may import the stages, the backends (factories and
// implementations included), agents/records, agents/config, the helpers and
// other command packages; only agents/cmd and other command packages import
// it.
package stagerun
