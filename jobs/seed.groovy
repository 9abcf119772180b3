// The seed job's pipeline: runs the Job DSL scripts of jobs/ against this
// Jenkins. The seed job is a Pipeline job that takes this file from the
// shared library's repository: created by JCasC (docs/jenkins/casc.yaml) or
// by `branchml jenkins seed`.
//
// jobs/multibranch.groovy runs outside the Groovy sandbox (it evaluates
// jobs/repos.groovy), so script security runs it only once an administrator
// approved it: in Manage Jenkins > In-process Script Approval after the first
// (failing) seed build, or ahead of time by its hash in JCasC
// (security.scriptApproval.approvedScriptHashes; `branchml jenkins
// script-hash jobs/multibranch.groovy` prints it). Each edit of that file
// needs a new approval; editing jobs/repos.groovy does not.
pipeline {
    // A pod of the Kubernetes cloud with only the agent container (the
    // inbound-agent image has git): Job DSL needs a workspace holding this
    // repository, nothing else.
    agent {
        kubernetes {
            defaultContainer 'jnlp'
        }
    }
    options {
        timeout(time: 10, unit: 'MINUTES')
        disableConcurrentBuilds()
        buildDiscarder(logRotator(numToKeepStr: '20'))
    }
    stages {
        stage('Seed') {
            steps {
                jobDsl(targets: 'jobs/multibranch.groovy',
                    lookupStrategy: 'SEED_JOB',
                    removedJobAction: 'IGNORE',
                    removedViewAction: 'IGNORE',
                    removedConfigFilesAction: 'IGNORE',
                    sandbox: false)
            }
        }
    }
}
