import groovy.transform.Field

// branchmlPipeline: the whole Jenkinsfile of an ML repository
//
//     @Library('branchml') _
//     branchmlPipeline()
//
// This declarative pipeline is the one source of truth for every stage: the
// per-stage files in Jenkinsfile.d/ only call it with a pinned stage. It asks
// `branchml config stages` which stages a merge into this branch runs (the
// mapping lives in branchml.yaml; Groovy never parses it), runs each stage's
// step in the agents container under that stage's timeout, and on change
// requests (env.CHANGE_ID) only plans them with --dry-run. See
// vars/branchmlPipeline.txt.

/** Stage key (branchml.yaml `branches:`) -> the step that runs it. */
@Field static final Map<String, String> STEPS = [build: 'branchmlBuild', pipeline: 'branchmlPipelineUpload',
                                                 train: 'branchmlTrain', deploy: 'branchmlDeploy']

/** Default timeout of each stage, in minutes. */
@Field static final Map<String, Integer> STAGE_TIMEOUTS = [build: 60, pipeline: 20, train: 360, deploy: 90]

/**
 * The commit messages of each stage's own write-backs (agents/README.md,
 * "Files each stage writes back": "branchml <stage>: <what> for <commit>";
 * the train stage's lineage records are "branchml snapshot: …"). A push made
 * only of these onto the stage's branch runs nothing. The promotion PR's
 * commit ("branchml promote: …") is not a write-back of the deploy stage.
 */
@Field static final Map<String, List<String>> WRITE_BACKS = [build   : ['branchml build:'], pipeline: ['branchml pipeline:'],
                                                             train   : ['branchml train:', 'branchml snapshot:'],
                                                             deploy  : ['branchml deploy:']]

@Field static final Map DEFAULTS = [
    stage         : null,                          // pin one stage (Jenkinsfile.d/); null: ask branchml config stages
    config        : 'branchml.yaml',               // the ML repository's configuration file
    podTemplate   : 'branchml/pod-template.yaml',  // library resource of the Kubernetes pod
    container     : 'branchml',                    // the pod's container that has the agents
    image         : null,                          // that container's image; null: env.BRANCHML_AGENTS_IMAGE, else the pod template's
    timeoutMinutes: 480,                           // the whole build
    stageTimeouts : [:],                           // stage key -> minutes, over STAGE_TIMEOUTS
    credentials   : [:],                           // credential name -> Jenkins ID ('' leaves it out)
    params        : [:],                           // stage key -> extra agent flags (JSON --params)
]

def call(Map cfg = [:]) {
    List unknown = (cfg.keySet() as List) - (DEFAULTS.keySet() as List)
    if (unknown) {
        error("branchmlPipeline: unknown argument(s) ${unknown}; allowed: ${DEFAULTS.keySet().join(', ')}")
    }
    Map opts = DEFAULTS + cfg
    if (opts.stage && !STEPS.containsKey(opts.stage)) {
        error("branchmlPipeline: stage '${opts.stage}' is not one of ${STEPS.keySet().join(', ')}")
    }
    String image = opts.image ?: env.BRANCHML_AGENTS_IMAGE
    String pod = libraryResource(opts.podTemplate)
    if (image) {
        pod = withImage(pod, opts.container as String, image as String)
        if (pod == null) {
            error("branchmlPipeline: the pod template ${opts.podTemplate} has no container '${opts.container}' with an image: line; " +
                'give container: the name of the agents container')
        }
    }
    List planned = []
    // The stage running now, for post { aborted }: a plain map, serializable across steps.
    Map running = [stage: null, minutes: null]

    pipeline {
        agent {
            kubernetes {
                yaml pod
                defaultContainer opts.container
            }
        }
        options {
            timeout(time: opts.timeoutMinutes, unit: 'MINUTES')
            disableConcurrentBuilds()
            buildDiscarder(logRotator(numToKeepStr: '50'))
        }
        stages {
            stage('Resolve stages') {
                steps {
                    script {
                        planned = resolveStages(opts)
                    }
                }
            }
            stage('Run stages') {
                when { expression { return !planned.isEmpty() } }
                steps {
                    script {
                        runStages(planned, opts, running)
                    }
                }
            }
        }
        post {
            aborted {
                script {
                    // Aborted by hand or by a timeout while an agent ran: it
                    // may have been killed before setting its final status.
                    if (running.stage) {
                        branchmlNotify(context: "branchml/${running.stage}", status: 'ERROR', config: opts.config,
                            credentials: opts.credentials,
                            description: "${running.stage} aborted or timed out (stage timeout ${running.minutes} min, build ${opts.timeoutMinutes} min)")
                    }
                }
            }
        }
    }
}

/** The stages to run: the pinned one, or what `branchml config stages` answers. */
private List resolveStages(Map opts) {
    if (opts.stage) {
        return [opts.stage]
    }
    // A change request plans what its merge would run on the target branch.
    String branch = env.CHANGE_ID ? (env.CHANGE_TARGET ?: env.BRANCH_NAME) : env.BRANCH_NAME
    Map out = branchmlAgent(binary: 'branchml', command: 'config stages', stage: 'config',
        params: [branch: branch, config: opts.config], notify: false, publish: false)
    List stages = (out.result?.outputs?.stages ?: []) as List
    for (String key in stages) {
        if (!STEPS.containsKey(key)) {
            error("branchmlPipeline: branchml config stages answered unknown stage '${key}'; " +
                'update the branchml shared library to the version of the agents')
        }
    }
    if (stages.isEmpty()) {
        echo("branchml: branch ${branch} runs no stage (branches: in ${opts.config}); nothing to do")
        currentBuild.description = "no branchml stage for ${branch}"
        return stages
    }
    if (!env.CHANGE_ID && !startedByUser(currentBuild.buildCauses)) {
        List prefixes = stages.collectMany { WRITE_BACKS[it] ?: [] }
        List<String> pushed = commitMessages(currentBuild.changeSets)
        if (pushed && pushed.every { String m -> prefixes.any { m.startsWith(it) } }) {
            echo("branchml: the push onto ${branch} holds only the write-backs of ${stages.join(', ')} " +
                "(${pushed.size()} commit(s): ${pushed[0]}${pushed.size() > 1 ? ', …' : ''}); nothing to do. Build it again by hand to run them")
            currentBuild.description = "only write-backs of ${stages.join(', ')}: nothing to do"
            return []
        }
    }
    echo("branchml: branch ${branch} ${env.CHANGE_ID ? 'would run' : 'runs'} ${stages.join(', ')}")
    return stages
}

/**
 * Runs the stages in order. A stage that stops at a gate (exit 3: KPIs not
 * met, a rollout rolled back) marks the build UNSTABLE and the stages after
 * it are skipped, each saying why; a failing stage fails the build.
 */
private void runStages(List planned, Map opts, Map running) {
    String stopped = null
    for (String key in planned) {
        if (stopped) {
            String why = "${key} skipped: ${stopped}"
            stage(key) {
                echo("branchml: ${why}")
                org.jenkinsci.plugins.pipeline.modeldefinition.Utils.markStageSkippedForConditional(key)
            }
            currentBuild.description = ([currentBuild.description, why].findAll { it }).join('\n')
            continue
        }
        Integer minutes = (opts.stageTimeouts[key] ?: STAGE_TIMEOUTS[key]) as Integer
        running.stage = key
        running.minutes = minutes
        Map out = runStage(key, minutes, opts)
        running.stage = null
        if (out?.exitCode == 3) {
            stopped = "${key} stopped at a gate (exit 3)"
        }
    }
}

/** Runs one stage's step under its timeout; returns the step's result map. */
private Map runStage(String key, Integer minutes, Map opts) {
    Map args = [config: opts.config, credentials: opts.credentials, params: opts.params[key] ?: [:]]
    Map out = null
    stage(key) {
        timeout(time: minutes, unit: 'MINUTES') {
            switch (key) {
                case 'build': out = branchmlBuild(args); break
                case 'pipeline': out = branchmlPipelineUpload(args); break
                case 'train': out = branchmlTrain(args); break
                case 'deploy': out = branchmlDeploy(args); break
            }
        }
    }
    return out
}

/** True when a user started the build (Build Now, the REST API): then write-backs are no reason to skip. */
@NonCPS
private static boolean startedByUser(Object causes) {
    return (causes ?: []).any { it?._class == 'hudson.model.Cause$UserIdCause' }
}

/** The messages (first lines) of the commits this build's checkout brought (currentBuild.changeSets). */
@NonCPS
private static List<String> commitMessages(Object changeSets) {
    List<String> out = []
    for (Object set in (changeSets ?: [])) {
        for (Object entry in (set.items ?: [])) {
            out << (entry.msg ?: '').toString().trim()
        }
    }
    return out
}

/**
 * The pod template yaml with the image of container name replaced by image;
 * null when the template has no such container with an image: line.
 */
@NonCPS
private static String withImage(String yaml, String name, String image) {
    List<String> lines = yaml.readLines()
    Integer indent = null
    for (int i = 0; i < lines.size(); i++) {
        String line = lines[i]
        def entry = line =~ /^(\s*)- name:\s*["']?([^"'\s]+)["']?\s*$/
        if (entry.matches()) {
            indent = entry.group(2) == name ? entry.group(1).length() : null
            continue
        }
        def img = line =~ /^(\s+)image:\s*\S+\s*$/
        if (indent != null && img.matches() && img.group(1).length() == indent + 2) {
            lines[i] = img.group(1) + 'image: ' + image
            return lines.join('\n') + '\n'
        }
    }
    return null
}
