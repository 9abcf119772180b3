import groovy.transform.Field

// branchmlDeploy: the deploy stage (branch deploy-model): canary rollout to TF Serving, promote or roll back.
// A thin wrapper: the work is done by `branchml-deploy run` (agents/README.md), run
// through branchmlAgent. See vars/branchmlDeploy.txt.

@Field static final List<String> ARGS = ['params', 'config', 'credentials', 'dryRun', 'commit']

/** The credentials `branchml-deploy run` gets by default (names of branchmlAgent's table). */
@Field static final List<String> CREDENTIALS = ['github']

/**
 * Runs the deploy stage and returns branchmlAgent's map
 * [exitCode, ok, result, errorDetails]; fails the build when the agent fails.
 */
def call(Map args = [:]) {
    List unknown = (args.keySet() as List) - ARGS
    if (unknown) {
        error("branchmlDeploy: unknown argument(s) ${unknown}; allowed: ${ARGS.join(', ')}")
    }
    return branchmlAgent(binary: 'branchml-deploy', stage: 'deploy', params: args.params ?: [:], config: args.config,
        credentials: CREDENTIALS, credentialIds: args.credentials ?: [:], dryRun: args.dryRun ?: false,
        commit: args.commit)
}
