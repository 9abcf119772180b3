// Job DSL: one Multibranch Pipeline job per ML repository listed in
// jobs/repos.groovy. Run by the seed job (jobs/seed.groovy).
//
// Every job discovers the stage branches, the ds* development branches and
// pull requests from origin; regular branches build when a push (a merge)
// lands, pull requests build to plan; nothing builds on the first indexing,
// so re-seeding never rebuilds every branch.

List repos = evaluate(readFileFromWorkspace('jobs/repos.groovy')) as List

List defaultBranches = ['build-components', 'kf-pipeline', 'training', 'deploy-model']

repos.each { Map repo ->
    ['name', 'owner', 'repository'].each { key ->
        if (!repo[key]) {
            throw new IllegalArgumentException("jobs/repos.groovy: entry ${repo} has no ${key}; give name, owner and repository")
        }
    }
    List parts = (repo.name as String).split('/') as List
    for (int i = 1; i < parts.size(); i++) {
        folder(parts.take(i).join('/'))
    }
    List branches = (repo.branches ?: defaultBranches) + ['main', 'ds*']

    multibranchPipelineJob(repo.name) {
        displayName(repo.repository)
        description("branchml: stages of ${repo.owner}/${repo.repository} (seeded from jobs/repos.groovy; edit it there)")
        branchSources {
            branchSource {
                source {
                    github {
                        // Constant per repository: re-seeding keeps the branch
                        // jobs and their history instead of replacing them.
                        id("branchml-${repo.owner}-${repo.repository}")
                        repoOwner(repo.owner)
                        repository(repo.repository)
                        repositoryUrl("https://github.com/${repo.owner}/${repo.repository}")
                        configuredByUrl(false)
                        credentialsId(repo.credentialsId ?: 'branchml-github-app')
                        traits {
                            // 3: all branches (also those filed as pull requests).
                            gitHubBranchDiscovery { strategyId(3) }
                            // 2: the pull request head, so GIT_COMMIT is the PR head commit.
                            gitHubPullRequestDiscovery { strategyId(2) }
                            headWildcardFilter {
                                includes((branches + ['PR-*']).join(' '))
                                excludes('')
                            }
                        }
                    }
                }
                buildStrategies {
                    // All of: (a regular branch or a pull request) and not the
                    // first indexing of the job.
                    buildAllBranches {
                        strategies {
                            buildAnyBranches {
                                strategies {
                                    buildRegularBranches()
                                    buildChangeRequests {
                                        ignoreTargetOnlyChanges(true)
                                        ignoreUntrustedChanges(true)
                                    }
                                }
                            }
                            skipInitialBuildOnFirstBranchIndexing()
                        }
                    }
                }
            }
        }
        orphanedItemStrategy {
            discardOldItems {
                daysToKeep(30)
                numToKeep(20)
            }
        }
        triggers {
            // A safety net for missed webhooks; pushes arrive by webhook.
            periodicFolderTrigger { interval('1d') }
        }
        factory {
            workflowBranchProjectFactory { scriptPath('Jenkinsfile') }
        }
    }
}
