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

@Field static final Map DEFAULTS = [
    stage         : null,                          // pin one stage (Jenkinsfile.d/); null: ask branchml config stages
    config        : 'branchml.yaml',               // the ML repository's configuration file
    podTemplate   : 'branchml/pod-template.yaml',  // library resource of the Kubernetes pod
    container     : 'branchml',                    // the pod's container that has the agents
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
    List planned = []

    pipeline {
        agent {
            kubernetes {
                yaml libraryResource(opts.podTemplate)
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
                        for (String key in planned) {
                            runStage(key, opts)
                        }
                    }
                }
            }
        }
        post {
            success {
                script {
                    if (planned) {
                        branchmlNotify(context: 'branchml', status: 'SUCCESS', commit: env.GIT_COMMIT,
                            description: "${env.CHANGE_ID ? 'planned' : 'ran'} ${planned.join(', ')}")
                    }
                }
            }
            unstable {
                branchmlNotify(context: 'branchml', status: 'FAILURE', commit: env.GIT_COMMIT,
                    description: 'a gate was not met or a rollout was rolled back')
            }
            failure {
                branchmlNotify(context: 'branchml', status: 'FAILURE', commit: env.GIT_COMMIT,
                    description: "failed: ${currentBuild.description ?: 'see the build log'}")
            }
            aborted {
                branchmlNotify(context: 'branchml', status: 'ERROR', commit: env.GIT_COMMIT,
                    description: 'aborted')
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
    } else {
        echo("branchml: branch ${branch} ${env.CHANGE_ID ? 'would run' : 'runs'} ${stages.join(', ')}")
    }
    return stages
}

/** Runs one stage's step under its timeout. */
private void runStage(String key, Map opts) {
    Integer minutes = (opts.stageTimeouts[key] ?: STAGE_TIMEOUTS[key]) as Integer
    Map args = [config: opts.config, credentials: opts.credentials, params: opts.params[key] ?: [:]]
    stage(key) {
        timeout(time: minutes, unit: 'MINUTES') {
            switch (key) {
                case 'build': branchmlBuild(args); break
                case 'pipeline': branchmlPipelineUpload(args); break
                case 'train': branchmlTrain(args); break
                case 'deploy': branchmlDeploy(args); break
            }
        }
    }
}
