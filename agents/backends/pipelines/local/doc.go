// Package local is the embedded pipelines.Backend: composed KFP v2 IR specs
// stored on disk with KFP-shaped IDs, and runs executed by agents/backends/pipelines/local/runner.
//
// Layout under the state directory:
//
//	pipelines/<pipeline-id>/pipeline.json                 name, description
//	pipelines/<pipeline-id>/versions/<version-id>.json    version metadata (pipelines.Version)
//	pipelines/<pipeline-id>/versions/<version-id>.yaml    the composed spec
//	runs/<run-id>/                                        a runner run directory (state.json, tasks/ …)
//
// IDs are UUIDs derived from names (version 5, SHA-1): a pipeline's from its
// name, a version's from the pipeline ID and spec hash, a run's from the
// experiment and display name. Uploading the same spec twice, or creating a
// run with the same experiment and display name twice, finds what exists.
//
// Runs execute in a goroutine of the process that holds the run's runner
// lock (runs/<run-id>/runner.lock, naming its pid): exactly one process
// executes a run; another that creates the same run follows it. When the
// executing process dies (even by SIGKILL), its tasks die with it (the
// runner's reaper), and a backend made WithAdoption (the follower of a run)
// continues the run in its own process, keeping the tasks that finished;
// without adoption GetRun reports the run FAILED, naming the pid. Another
// process can read a run's state and cancel it (through the run directory's
// cancel-request file). CheckSpec (pipelines.SpecChecker) says at upload and
// plan time what the runner cannot run.
//
// As an implementation of the pipelines backend it imports only packages of
// that concern (agents/backends/pipelines/...), agents/records,
// agents/config and helpers; never a stage, a command or another concern.
package local
