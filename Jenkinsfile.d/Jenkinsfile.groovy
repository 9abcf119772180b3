// The Jenkinsfile of an ML repository (copy it to the repository's root as
// "Jenkinsfile"). The seeded Multibranch Pipeline job (jobs/multibranch.groovy)
// runs it for every stage branch, ds* branch and pull request; the branch
// mapping in branchml.yaml decides which stage a branch runs, and pull
// requests only plan (--dry-run). The pipeline itself is vars/branchmlPipeline.groovy.
@Library('branchml') _

branchmlPipeline()
