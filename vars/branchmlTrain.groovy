import groovy.transform.Field

// branchmlTrain: the train stage (branch training): start and follow a KFP run, snapshot, promote.
// A thin wrapper: the work is done by `branchml-train run` (agents/README.md), run
// through branchmlAgent. See vars/branchmlTrain.txt.

@Field static final List<String> ARGS = ['params', 'config', 'credentials', 'dryRun', 'commit']

/** The credentials `branchml-train run` gets by default (names of branchmlAgent's table). */
@Field static final List<String> CREDENTIALS = ['github', 'kfp', 'kaggle']

/**
 * Runs the train stage and returns branchmlAgent's map
 * [exitCode, ok, result, errorDetails]; fails the build when the agent fails.
 */
def call(Map args = [:]) {
    List unknown = (args.keySet() as List) - ARGS
    if (unknown) {
        error("branchmlTrain: unknown argument(s) ${unknown}; allowed: ${ARGS.join(', ')}")
    }
    return branchmlAgent(binary: 'branchml-train', stage: 'train', params: args.params ?: [:], config: args.config,
        credentials: CREDENTIALS, credentialIds: args.credentials ?: [:], dryRun: args.dryRun ?: false,
        commit: args.commit)
}
