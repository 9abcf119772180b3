import groovy.transform.Field

// branchmlNotify: sets one commit status (e.g. branchml/train) through the
// agents' forge (`branchml commit-status`: GitHub with the github credential,
// or the local git remote), so Jenkins needs no notify plugin. The stage
// agents set their own statuses (pending, then the outcome); the library
// calls this only for what no agent can report: a build aborted or timed
// out while a stage ran, an agent that died before writing its result.
// See vars/branchmlNotify.txt.

/** The status values (GitHub's commit status states, upper case). */
@Field static final List<String> STATUSES = ['PENDING', 'SUCCESS', 'FAILURE', 'ERROR']

@Field static final List<String> ARGS = ['context', 'status', 'description', 'commit', 'config', 'credentials']

/** Returns true when the status was set; a status that cannot be set is logged and never fails the build. */
def call(Map args = [:]) {
    List unknown = (args.keySet() as List) - ARGS
    if (unknown) {
        error("branchmlNotify: unknown argument(s) ${unknown}; allowed: ${ARGS.join(', ')}")
    }
    if (!(args.status in STATUSES)) {
        error("branchmlNotify: status '${args.status}' is not one of ${STATUSES.join(', ')}")
    }
    if (!args.context) {
        error("branchmlNotify: give a context, e.g. 'branchml/train'")
    }
    String description = (args.description ?: args.status).toString()
    String commit = args.commit ?: env.GIT_COMMIT
    if (env.BRANCHML_NOTIFY == 'false') {
        echo("branchml: commit status ${args.context} ${args.status}: ${description} (not sent: BRANCHML_NOTIFY=false)")
        return false
    }
    if (!commit) {
        echo("branchml: commit status ${args.context} ${args.status} not sent: no commit (env.GIT_COMMIT is empty)")
        return false
    }
    Map params = [context: args.context, state: args.status.toLowerCase(), description: description, commit: commit,
                  workspace: env.WORKSPACE]
    if (env.BUILD_URL) { params['build-url'] = env.BUILD_URL }
    try {
        branchmlAgent(binary: 'branchml', command: 'commit-status', stage: 'commit-status', params: params,
            config: args.config, credentials: ['github'], credentialIds: args.credentials ?: [:], notify: false, publish: false)
        return true
    } catch (Exception err) {
        // A status that cannot be set must not change the build's result.
        echo("branchml: could not set commit status ${args.context}: ${err.message}")
        return false
    }
}
