import groovy.transform.Field

// branchmlBuild: the build stage (branch build-components): test, build and push each changed component's image.
// A thin wrapper: the work is done by `branchml-build run` (agents/README.md), run
// through branchmlAgent. See vars/branchmlBuild.txt.

@Field static final List<String> ARGS = ['params', 'config', 'credentials', 'dryRun', 'commit']

/** The credentials `branchml-build run` gets by default (names of branchmlAgent's table). */
@Field static final List<String> CREDENTIALS = ['github', 'registry']

/**
 * Runs the build stage and returns branchmlAgent's map
 * [exitCode, ok, result, errorDetails]; fails the build when the agent fails.
 */
def call(Map args = [:]) {
    List unknown = (args.keySet() as List) - ARGS
    if (unknown) {
        error("branchmlBuild: unknown argument(s) ${unknown}; allowed: ${ARGS.join(', ')}")
    }
    return branchmlAgent(binary: 'branchml-build', stage: 'build', params: args.params ?: [:], config: args.config,
        credentials: CREDENTIALS, credentialIds: args.credentials ?: [:], dryRun: args.dryRun ?: false,
        commit: args.commit)
}
