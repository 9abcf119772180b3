import groovy.transform.Field

// branchmlNotify: sets one GitHub commit status through the GitHub plugins'
// githubNotify step (pipeline-githubnotify-step). Jenkins, not the agents,
// owns commit statuses: the agents report through their result JSON, the
// steps turn that into statuses. See vars/branchmlNotify.txt.

/** githubNotify's status values. */
@Field static final List<String> STATUSES = ['PENDING', 'SUCCESS', 'FAILURE', 'ERROR']

/** GitHub's limit on a commit status description, in characters. */
@Field static final int DESCRIPTION_MAX = 140

def call(Map args = [:]) {
    List unknown = (args.keySet() as List) - ['context', 'status', 'description', 'commit']
    if (unknown) {
        error("branchmlNotify: unknown argument(s) ${unknown}; allowed: context, status, description, commit")
    }
    if (!(args.status in STATUSES)) {
        error("branchmlNotify: status '${args.status}' is not one of ${STATUSES.join(', ')}")
    }
    if (!args.context) {
        error("branchmlNotify: give a context, e.g. 'branchml/train'")
    }
    String description = (args.description ?: args.status).toString()
    if (description.length() > DESCRIPTION_MAX) {
        description = description.substring(0, DESCRIPTION_MAX - 3) + '...'
    }
    if (env.BRANCHML_NOTIFY == 'false') {
        echo("branchml: commit status ${args.context} ${args.status}: ${description} (not sent: BRANCHML_NOTIFY=false)")
        return false
    }
    Map notify = [context: args.context, status: args.status, description: description]
    if (env.BUILD_URL) { notify.targetUrl = env.BUILD_URL }
    if (args.commit) { notify.sha = args.commit }
    try {
        githubNotify(notify)
        return true
    } catch (err) {
        // A status that cannot be set must not fail the stage it reports on.
        echo("branchml: could not set commit status ${args.context}: ${err.message}")
        return false
    }
}
