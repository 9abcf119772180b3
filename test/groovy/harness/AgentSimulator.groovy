package branchml.harness

import groovy.json.JsonOutput
import groovy.json.JsonSlurperClassic

/**
 * Plays the branchml agents behind the harness's sh step, following the
 * contract of agents/README.md: it reads the --params JSON file named by
 * $BRANCHML_PARAMS, records the invocation, and writes the result JSON to
 * $BRANCHML_RESULT (and the error-details JSON to $BRANCHML_ERROR_DETAILS on
 * failure). `branchml config stages` answers from {@link #branches}, the
 * example's mapping (examples/djia30/branchml.yaml). Commit statuses are
 * recorded in {@link #statuses} as the agents set them: a stage's `run`
 * sets branchml/<stage> pending and then its outcome (unless
 * --commit-status is off or no build URL is given), `branchml
 * commit-status` sets the one it is given.
 */
class AgentSimulator {
    /** The branch mapping: branch -> stages in order. */
    Map<String, List<String>> branches = [
        'build-components': ['build'],
        'kf-pipeline'     : ['pipeline'],
        'training'        : ['train'],
        'deploy-model'    : ['deploy'],
    ]
    /** Whether `command -v branchml` finds the agents. */
    boolean onPath = true
    /** binary -> exit code to fail with (and write error details). */
    Map<String, Integer> failures = [:]
    /** binary -> the summary its result JSON carries on success (default: "<stage> done for <commit>"). */
    Map<String, String> summaries = [:]
    /** binary -> how its run ends instead: 'killed' (exit 137, no result), 'aborted' (the build is aborted meanwhile). */
    Map<String, String> ends = [:]
    /** What the agents archive download does: 'ok', 'missing' (HTTP 404), 'tampered' (another digest). */
    String download = 'ok'
    /** Recorded agent invocations: [binary, command, params (parsed), env]. */
    final List<Map> runs = []
    /** Commit statuses set: [context, state, description, commit, url]. */
    final List<Map> statuses = []
    final PipelineHarness h

    AgentSimulator(PipelineHarness h) {
        this.h = h
        h.shHandler = { Map call -> this.handle(call) }
    }

    private static final String TAIL = ' --params "$BRANCHML_PARAMS" --result "$BRANCHML_RESULT" --error-details "$BRANCHML_ERROR_DETAILS"'

    Object handle(Map call) {
        String script = call.script
        if (script == 'command -v branchml >/dev/null 2>&1') {
            return onPath ? 0 : 1
        }
        if (script.startsWith('set -u\nmkdir -p "$BRANCHML_AGENTS_DIR"')) {
            switch (download) {
                case 'missing': return 10
                case 'tampered':
                    h.files[call.env.BRANCHML_AGENTS_ARCHIVE + '.sha256'] = 'ab' * 32 + '\n'
                    return 11
            }
            return 0
        }
        if (!script.endsWith(TAIL)) {
            throw new AssertionError("unexpected sh script: ${script}")
        }
        List<String> words = (script - TAIL).split(' ') as List
        String binary = words[0]
        String command = words.drop(1).join(' ')
        Map env = call.env
        Map params = new JsonSlurperClassic().parseText(h.files[env.BRANCHML_PARAMS]) as Map
        runs << [binary: binary, command: command, params: params, env: env]
        String stage = binary == 'branchml' ? (command == 'commit-status' ? 'commit-status' : 'config') : binary - 'branchml-'
        Integer rc = failures[binary] ?: 0
        boolean setsStatus = command == 'run' && params['commit-status'] != 'off' && params['build-url'] && params.commit
        if (setsStatus) {
            statuses << [context: "branchml/${stage}".toString(), state: 'pending',
                         description: "${params['dry-run'] ? 'planning' : 'running'} ${stage}".toString(), commit: params.commit, url: params['build-url']]
        }
        if (ends[binary] == 'killed') {
            return 137
        }
        if (ends[binary] == 'aborted') {
            throw new FlowInterrupted("build aborted while ${binary} ${command} ran")
        }
        if (command == 'commit-status') {
            statuses << [context: params.context, state: params.state, description: params.description, commit: params.commit, url: params['build-url']]
        }
        Map result = [apiVersion: 'branchml.dev/v1', kind: 'Result', stage: stage, ok: rc == 0, exitCode: rc,
                      dryRun    : params['dry-run'] == true, startedAt: '2026-11-29T12:00:00Z', finishedAt: '2026-11-29T12:00:04Z']
        if (command == 'config stages') {
            List<String> stages = branches[params.branch] ?: []
            result.summary = "branch ${params.branch} runs ${stages.size()} stage(s)".toString()
            result.outputs = [branch: params.branch, stages: stages]
        } else if (rc == 0) {
            result.summary = summaries[binary] ?: "${stage} ${params['dry-run'] ? 'planned' : 'done'} for ${params.commit}".toString()
            result.outputs = [commit: params.commit]
            result.links = [[name: 'pipeline version', url: 'https://kfp.example.com/#/pipelines/details/p1/version/v1']]
            result.reports = [[name: 'tests', path: "build/${stage}-junit.xml".toString(), kind: 'junit'],
                              [name: 'plan', path: "build/${stage}-plan.json".toString(), kind: 'json']]
        } else {
            result.summary = "push prepare-data: registry answered 401 Unauthorized"
        }
        if (setsStatus) {
            statuses << [context: "branchml/${stage}".toString(), state: rc == 0 ? 'success' : 'failure',
                         description: rc == 0 ? result.summary.readLines()[0] : (rc == 3 ? 'gate not met: ' : '') + 'push prepare-data: registry 127.0.0.1:5000 answered 401 Unauthorized',
                         commit: params.commit, url: params['build-url']]
        }
        h.files[env.BRANCHML_RESULT as String] = JsonOutput.prettyPrint(JsonOutput.toJson(result))
        if (rc != 0) {
            h.files[env.BRANCHML_ERROR_DETAILS as String] = JsonOutput.toJson([
                apiVersion: 'branchml.dev/v1', kind: 'ErrorDetails', stage: stage, exitCode: rc,
                what      : 'push prepare-data', why: 'registry 127.0.0.1:5000 answered 401 Unauthorized',
                fix       : 'check the registry credentials in REGISTRY_USERNAME/REGISTRY_PASSWORD'])
        }
        return rc
    }
}
