// The seed job's pipeline: runs the Job DSL scripts of jobs/ against this
// Jenkins. `branchml jenkins seed` creates the seed job (a Pipeline job that
// takes this file from the shared library's repository) and triggers it.
pipeline {
    agent any
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
