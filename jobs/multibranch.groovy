// Job DSL: one Multibranch Pipeline job per ML repository listed in
// jobs/repos.groovy. Run by the seed job (jobs/seed.groovy).
//
// Every job discovers the stage branches, the ds* development branches and
// pull requests from origin; regular branches build when a push (a merge)
// lands, pull requests build to plan; nothing builds on the first indexing,
// so re-seeding never rebuilds every branch, and a push made only of the
// agents' own write-back commits (branchml@localhost) does not build again.
//
// Jenkins plugins this script needs: job-dsl, workflow-multibranch,
// github-branch-source, basic-branch-build-strategies (buildAllBranches,
// buildAnyBranches, buildRegularBranches, buildChangeRequests,
// skipInitialBuildOnFirstBranchIndexing) and ignore-committer-strategy
// (ignoreCommitterStrategy).

List repos = evaluate(readFileFromWorkspace('jobs/repos.groovy')) as List

List defaultBranches = ['build-components', 'kf-pipeline', 'training', 'deploy-model']

// The e-mail of the agents' write-back commits (agents/README.md, "Files each
// stage writes back"); the ignore-committer-strategy plugin skips builds of
// pushes made only of its commits.
String branchmlAuthor = 'branchml@localhost'

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
                    // All of: not the first indexing of the job, and either a
                    // pull request or a regular branch whose new commits are
                    // not all write-backs of the agents. Every stage pushes
                    // to its own branch as branchml <branchml@localhost>; that
                    // push must not build the branch again (the rebuild would
                    // write nothing). A merge by a person still builds: one
                    // commit by another author is enough. Pull requests are
                    // not filtered: the promotion PRs the train stage opens
                    // are branchml's own and still get their plan build.
                    // Needs the plugins basic-branch-build-strategies and
                    // ignore-committer-strategy.
                    buildAllBranches {
                        strategies {
                            buildAnyBranches {
                                strategies {
                                    buildAllBranches {
                                        strategies {
                                            buildRegularBranches()
                                            ignoreCommitterStrategy {
                                                ignoredAuthors(branchmlAuthor)
                                                allowBuildIfNotExcludedAuthor(true)
                                            }
                                        }
                                    }
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
