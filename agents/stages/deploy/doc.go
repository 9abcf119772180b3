// Package deploy is the deploy-model stage: it makes the serving side match
// deploy.yaml (records.DeploySpec) with a canary rollout or an A/B
// experiment, writes the status (records.DeployStatus) back to the deploy
// branch, and offers status and rollback.
//
// As part of the deploy stage it imports its own stage's packages, backend
// interface packages (never an implementation or a factory: its command
// passes the backends in), agents/records, agents/config and
// helpers; never another stage or a command.
package deploy
