// The ML repositories Jenkins builds: one Multibranch Pipeline job each.
// Read by jobs/multibranch.groovy (evaluated, so this file only returns the list).
//
//   name          the job's name (a folder path like 'ml/djia30' is allowed; the folders are created)
//   owner         the GitHub organisation or user
//   repository    the GitHub repository
//   credentialsId Jenkins credentials the GitHub branch source scans with
//                 (a GitHub App or username + token); default 'branchml-github-app'
//   branches      the stage branches (the values of branches: in the repo's
//                 branchml.yaml); default build-components kf-pipeline training deploy-model
//   deployBranch  the branch the promotion pull requests go into (branches.deploy);
//                 default deploy-model
[
    [name: 'ml/djia30', owner: 'branchml', repository: 'djia30', credentialsId: 'branchml-github-app'],
]
