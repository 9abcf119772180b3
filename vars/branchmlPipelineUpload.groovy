import groovy.transform.Field

// branchmlPipelineUpload: the pipeline stage (branch kf-pipeline): pin image digests into the KFP v2 pipeline and upload a version.
// A thin wrapper: the work is done by `branchml-pipeline run` (agents/README.md), run
// through branchmlAgent. See vars/branchmlPipelineUpload.txt.

@Field static final List<String> ARGS = ['params', 'config', 'credentials', 'dryRun', 'commit']

/** The credentials `branchml-pipeline run` gets by default (names of branchmlAgent's table). */
@Field static final List<String> CREDENTIALS = ['github', 'kfp']

/**
 * Runs the pipeline stage and returns branchmlAgent's map
 * [exitCode, ok, result, errorDetails]; fails the build when the agent fails.
 */
def call(Map args = [:]) {
    List unknown = (args.keySet() as List) - ARGS
    if (unknown) {
        error("branchmlPipelineUpload: unknown argument(s) ${unknown}; allowed: ${ARGS.join(', ')}")
    }
    return branchmlAgent(binary: 'branchml-pipeline', stage: 'pipeline', params: args.params ?: [:], config: args.config,
        credentials: CREDENTIALS, credentialIds: args.credentials ?: [:], dryRun: args.dryRun ?: false,
        commit: args.commit)
}
