// Package agent is the contract every branchml agent keeps with the Jenkins
// step and with the operator (agents/README.md): the exit codes, the typed
// Error with what failed, why and the fix, the Result and ErrorDetails JSON,
// and the BuildContext Jenkins passes in. The stages return its errors and
// results; agents/cli writes them out.
//
// As a helper it imports only other helpers under agents/internal and
// agents/config.
package agent
