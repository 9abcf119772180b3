import groovy.json.JsonOutput
import groovy.json.JsonSlurperClassic
import groovy.transform.Field

// branchmlAgent: the one place that runs a branchml agent (see vars/branchmlAgent.txt
// and agents/README.md for the contract). It checks its arguments, finds the
// binaries, writes the parameters as a JSON file, binds credentials, runs one
// constant-shaped sh command, reads the result and error-details JSON back and
// publishes them. Everything else is the agent's job, commit statuses too:
// a stage's agent sets branchml/<stage> through its forge (no notify plugin).

/** The binaries of agents/README.md; nothing else is ever run. */
@Field static final List<String> BINARIES = ['branchml', 'branchml-build', 'branchml-pipeline',
                                             'branchml-train', 'branchml-snapshot', 'branchml-deploy']

/**
 * The credentials an agent may get, by short name: the Jenkins credential ID
 * used by default and the environment variables the agents read
 * (agents/README.md, "Secrets").
 */
@Field static final Map<String, Map> CREDENTIALS = [
    github  : [id: 'branchml-github-token', kind: 'string', variable: 'GITHUB_TOKEN'],
    kfp     : [id: 'branchml-kfp-token', kind: 'string', variable: 'KFP_TOKEN'],
    registry: [id: 'branchml-registry', kind: 'usernamePassword', usernameVariable: 'REGISTRY_USERNAME', passwordVariable: 'REGISTRY_PASSWORD'],
    kaggle  : [id: 'branchml-kaggle', kind: 'usernamePassword', usernameVariable: 'KAGGLE_USERNAME', passwordVariable: 'KAGGLE_KEY'],
]

@Field static final List<String> ARGS = ['binary', 'command', 'stage', 'params', 'config', 'credentials',
                                         'credentialIds', 'dryRun', 'commit', 'notify', 'publish']

/**
 * Runs `binary command --params … --result … --error-details …` and returns
 * [exitCode: int, ok: boolean, result: Map or null, errorDetails: Map or null].
 * A non-zero exit fails the build (error) after publishing; exit 3 (gate not
 * met, rolled back) marks it UNSTABLE instead.
 */
def call(Map args = [:]) {
    List unknown = (args.keySet() as List) - ARGS
    if (unknown) {
        error("branchmlAgent: unknown argument(s) ${unknown}; allowed: ${ARGS.join(', ')}")
    }
    String binary = args.binary
    if (!(binary in BINARIES)) {
        error("branchmlAgent: binary '${binary}' is not a branchml agent; use one of ${BINARIES.join(', ')}")
    }
    String command = args.command ?: 'run'
    if (!(command ==~ /[a-z][a-z-]*( [a-z][a-z-]*)*/)) {
        error("branchmlAgent: command '${command}' must be words of lower-case letters, e.g. 'run' or 'config stages'")
    }
    if (args.params != null && !(args.params instanceof Map)) {
        error("branchmlAgent: params must be a map of flag name to value, not ${args.params.getClass().simpleName}")
    }
    String stage = args.stage ?: binary.replaceFirst(/^branchml-?/, '') ?: 'branchml'
    boolean isRun = command == 'run'
    boolean planOnly = env.CHANGE_ID ? true : (args.dryRun ? true : false)
    String commit = args.commit ?: env.GIT_COMMIT

    Map params = [:]
    if (args.config) { params.config = args.config }
    if (isRun) {
        params.putAll(buildContext(commit))
    }
    params.putAll(args.params ?: [:])
    if (isRun && planOnly) {
        // Change requests only plan; no parameter can turn that off.
        params['dry-run'] = true
    }

    String tmp = pwd(tmp: true)
    String slug = command.replace(' ', '-')
    String base = "${tmp}/branchml/${binary}-${slug}-${env.BUILD_NUMBER ?: '0'}"
    String paramsFile = base + '.params.json'
    String resultFile = base + '.result.json'
    String errorFile = base + '.error.json'

    boolean notify = args.notify != false && env.BRANCHML_NOTIFY != 'false'
    if (isRun && !notify) {
        // The agent sets the stage's commit status itself (pending, then
        // its outcome, with the build URL) unless told not to.
        params['commit-status'] = 'off'
    }
    writeFile(file: paramsFile, text: JsonOutput.toJson(params))

    List<String> path = agentsOnPath() ? [] : ["PATH+BRANCHML=${installAgents(tmp)}".toString()]
    List bindings = credentialBindings(args.credentials ?: [], args.credentialIds ?: [:])

    // The command is a constant-shaped single-quoted string: the shell expands
    // the variables set by withEnv; no value is ever interpolated into it.
    String script = binary + ' ' + command + ' --params "$BRANCHML_PARAMS" --result "$BRANCHML_RESULT" --error-details "$BRANCHML_ERROR_DETAILS"'
    int rc = withEnv(["BRANCHML_PARAMS=${paramsFile}", "BRANCHML_RESULT=${resultFile}",
                      "BRANCHML_ERROR_DETAILS=${errorFile}"] + path) {
        withCredentials(bindings) {
            return sh(script: script, returnStatus: true, label: "${binary} ${command}")
        }
    }

    Map result = fileExists(resultFile) ? parseJson(readFile(resultFile)) : null
    Map details = rc != 0 && fileExists(errorFile) ? parseJson(readFile(errorFile)) : null
    if (args.publish != false) {
        publish(stage, result, details, rc)
    }
    String failure = rc == 0 ? null : failureMessage(binary, command, rc, details)
    if (isRun && notify && rc != 0 && result == null) {
        // The agent ended without writing its result (killed: OOM, the
        // pod evicted): it may not have set its final commit status.
        branchmlNotify(context: "branchml/${stage}", status: 'FAILURE', commit: commit, config: args.config,
            credentials: args.credentialIds ?: [:], description: "${binary} ${command} ended with exit ${rc} before writing its result")
    }
    if (rc == 3) {
        unstable(failure)
    } else if (rc != 0) {
        error(failure)
    }
    return [exitCode: rc, ok: rc == 0, result: result, errorDetails: details]
}

/** The build-context flags of stage `run` commands (agents/README.md). */
private Map buildContext(String commit) {
    Map ctx = [workspace: env.WORKSPACE]
    // On change requests the stage plans what a merge into the target would do.
    ctx.branch = env.CHANGE_ID ? (env.CHANGE_TARGET ?: env.BRANCH_NAME) : env.BRANCH_NAME
    if (commit) { ctx.commit = commit }
    if (env.CHANGE_ID) { ctx['change-id'] = env.CHANGE_ID }
    if (env.BUILD_URL) { ctx['build-url'] = env.BUILD_URL }
    if (env.BUILD_USER_ID) { ctx['build-user'] = env.BUILD_USER_ID }
    return ctx
}

/** The withCredentials bindings of the named credentials; an ID of '' or null leaves one out. */
private List credentialBindings(List names, Map ids) {
    List unknown = (ids.keySet() as List) - (CREDENTIALS.keySet() as List)
    if (unknown) {
        error("branchmlAgent: unknown credential name(s) ${unknown}; known: ${CREDENTIALS.keySet().join(', ')}")
    }
    List bindings = []
    for (String name in names) {
        Map spec = CREDENTIALS[name]
        if (spec == null) {
            error("branchmlAgent: unknown credential name '${name}'; known: ${CREDENTIALS.keySet().join(', ')}")
        }
        Object given = ids.containsKey(name) ? ids[name] : spec.id
        String id = given instanceof Map ? given.id : given
        if (!id) {
            continue
        }
        boolean asFile = given instanceof Map && given.file
        if (spec.kind == 'string' && asFile) {
            bindings << file(credentialsId: id, variable: spec.variable + '_FILE')
        } else if (spec.kind == 'string') {
            bindings << string(credentialsId: id, variable: spec.variable)
        } else {
            bindings << usernamePassword(credentialsId: id, usernameVariable: spec.usernameVariable,
                passwordVariable: spec.passwordVariable)
        }
    }
    return bindings
}

/** True when the agents image (or the node) has the binaries on PATH. */
private boolean agentsOnPath() {
    return sh(script: 'command -v branchml >/dev/null 2>&1', returnStatus: true, label: 'find branchml agents') == 0
}

/**
 * Downloads the agents archive pinned in resources/branchml/agents.sha256
 * (from the release URL there, or from env.BRANCHML_AGENTS_URL, a mirror
 * that holds the same archives), checks its sha256 and unpacks it; returns
 * the directory to put on PATH. A failed download or a digest that does not
 * match fails with the URL and the expected digest.
 */
private String installAgents(String tmp) {
    String arch = env.BRANCHML_AGENTS_ARCH ?: 'linux-amd64'
    Map pin = parsePins(libraryResource('branchml/agents.sha256'), arch)
    if (!pin.sha256) {
        error("branchmlAgent: resources/branchml/agents.sha256 pins no archive for ${arch}; " +
            'run on the agents image (branchmlPipeline(image: …)) or add the archive line with make release')
    }
    String base = env.BRANCHML_AGENTS_URL ?: pin.url
    String url = base.endsWith('/') ? base + pin.archive : base + '/' + pin.archive
    String dir = "${tmp}/branchml/agents-${pin.version}"
    String archive = "${tmp}/branchml/${pin.archive}"
    int rc = withEnv(["BRANCHML_AGENTS_URL=${url}", "BRANCHML_AGENTS_SHA256=${pin.sha256}",
                      "BRANCHML_AGENTS_ARCHIVE=${archive}", "BRANCHML_AGENTS_DIR=${dir}"]) {
        return sh(label: "install branchml agents ${pin.version}", returnStatus: true, script: INSTALL_SCRIPT)
    }
    String where = "the branchml agents ${pin.version} (${arch}) pinned in resources/branchml/agents.sha256"
    switch (rc) {
        case 0:
            return dir
        case 10:
            error("branchmlAgent: could not download ${where} from ${url} (see the curl message above); expected sha256 ${pin.sha256}. " +
                'Run the stages on the agents image (branchmlPipeline(image: …) or BRANCHML_AGENTS_IMAGE), or set ' +
                "BRANCHML_AGENTS_URL to a mirror that serves ${pin.archive}")
            break
        case 11:
            String got = fileExists(archive + '.sha256') ? readFile(archive + '.sha256').trim() : 'unknown'
            error("branchmlAgent: ${url} does not match ${where}: expected sha256 ${pin.sha256}, got ${got}. " +
                'Nothing was installed; check the mirror, or pin the archives of the release you serve (make release)')
            break
        default:
            error("branchmlAgent: unpacking ${archive} (${where}) failed with exit ${rc}; see the log above")
    }
    return null
}

/**
 * The install script: constant, values come from the environment. Exit 10:
 * the download failed; 11: the digest does not match (the actual digest is
 * written to $BRANCHML_AGENTS_ARCHIVE.sha256); 12: unpacking failed.
 */
@Field static final String INSTALL_SCRIPT = '''set -u
mkdir -p "$BRANCHML_AGENTS_DIR" || exit 12
curl -fsSL --retry 3 -o "$BRANCHML_AGENTS_ARCHIVE" "$BRANCHML_AGENTS_URL" || exit 10
got=$(sha256sum "$BRANCHML_AGENTS_ARCHIVE" | cut -d' ' -f1)
if [ "$got" != "$BRANCHML_AGENTS_SHA256" ]; then echo "$got" > "$BRANCHML_AGENTS_ARCHIVE.sha256"; rm -f "$BRANCHML_AGENTS_ARCHIVE"; exit 11; fi
tar -xzf "$BRANCHML_AGENTS_ARCHIVE" -C "$BRANCHML_AGENTS_DIR" || exit 12'''

/** Reads "# version:", "# url:" and the "<sha256>  <archive>" line whose name has arch. */
@NonCPS
private static Map parsePins(String text, String arch) {
    Map pin = [:]
    text.readLines().each { String line ->
        def m = line =~ /^#\s*(version|url):\s*(\S+)\s*$/
        if (m.matches()) {
            pin[m.group(1)] = m.group(2)
            return
        }
        def a = line =~ /^([0-9a-f]{64})\s+(\S+)$/
        if (a.matches() && a.group(2).contains(arch)) {
            pin.sha256 = a.group(1)
            pin.archive = a.group(2)
        }
    }
    return pin
}

/** Build description, junit reports and archived reports from the result JSON. */
private void publish(String stage, Map result, Map details, int rc) {
    List<String> lines = []
    if (result) {
        lines << "${stage}${result.dryRun ? ' (plan)' : ''}: ${result.summary ?: (result.ok ? 'done' : 'failed')}".toString()
        for (Map link in (result.links ?: [])) {
            lines << "${link.name}: ${link.url}".toString()
        }
    }
    if (details) {
        lines << "${stage} failed: ${details.what}: ${details.why}".toString()
        if (details.fix) { lines << "fix: ${details.fix}".toString() }
    } else if (rc != 0 && !result) {
        lines << "${stage} failed with exit code ${rc} and wrote no result".toString()
    }
    if (lines) {
        currentBuild.description = ([currentBuild.description] + lines).findAll { it }.join('\n')
    }
    for (Map report in (result?.reports ?: [])) {
        String path = report.path
        if (!path || path.startsWith('/') || path.split('/').contains('..')) {
            echo("branchml: skipping report '${report.name}': path '${path}' is not inside the workspace")
            continue
        }
        if (report.kind == 'junit') {
            junit(testResults: path, allowEmptyResults: true)
        } else {
            archiveArtifacts(artifacts: path, allowEmptyArchive: true, fingerprint: true)
        }
    }
}

private static String failureMessage(String binary, String command, int rc, Map details) {
    String head = "${binary} ${command} ${rc == 3 ? 'stopped at a gate' : 'failed'} (exit ${rc})"
    if (!details) {
        return "${head}; it wrote no error details, see the log above"
    }
    return "${head}: ${details.what}: ${details.why}" + (details.fix ? "\nfix: ${details.fix}" : '')
}

@NonCPS
private static Map parseJson(String text) {
    Object v = new JsonSlurperClassic().parseText(text)
    return v instanceof Map ? (Map) v : null
}
