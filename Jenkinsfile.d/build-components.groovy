// The build stage pinned: a job (or script path) that should run only the build
// stage, whatever the branch mapping says, uses this file as its Jenkinsfile.
// Usually the default Jenkinsfile (Jenkinsfile.d/Jenkinsfile.groovy) is enough:
// with the example mapping it runs build on branch build-components.
// The declarative pipeline (agent pod, timeouts, post notifications) is
// vars/branchmlPipeline.groovy: one source of truth for every stage.
@Library('branchml') _

branchmlPipeline(stage: 'build')
