// Job DSL: one Multibranch Pipeline job per ML repository listed in
// jobs/repos.groovy. Run by the seed job (jobs/seed.groovy).
//
// Every job discovers the stage branches, the ds* development branches and
// pull requests from origin. When Jenkins builds (the build strategies,
// decided per branch or pull request at each push event or scan):
//   - a pull request: when it is opened (the train stage's promotion PR
//     too) and at each new head commit; it only plans (--dry-run);
//   - a stage branch (not the deploy branch): at a push with at least one
//     commit whose author is not the agents (branchml@localhost), so the
//     agents' own write-backs do not build it again;
//   - the deploy branch: at every push, so that merging the promotion PR
//     builds it whatever the merge method (a rebase merge keeps the
//     agents as the authors of every commit); the pipeline itself
//     (branchmlPipeline) skips a push made only of the deploy stage's own
//     write-backs;
//   - no regular branch builds when it is first discovered (a new job, or
//     re-seeding after the source changed), so seeding never builds every
//     branch. (skipInitialBuildOnFirstBranchIndexing skips every newly
//     discovered head, whenever discovered: it is not applied to pull
//     requests, which must get their plan build when opened.)
//
// Jenkins plugins this script needs (plugins.txt): job-dsl,
// workflow-multibranch, github-branch-source, basic-branch-build-strategies
// (buildChangeRequests, buildAllBranches, buildNoneBranches,
// buildRegularBranches, buildNamedBranches with exact,
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
    String deployBranch = repo.deployBranch ?: 'deploy-model'
    if (!(deployBranch in branches)) {
        throw new IllegalArgumentException("jobs/repos.groovy: entry ${repo.name}: deployBranch ${deployBranch} is not one of its branches ${branches}")
    }

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
                    // Any of these says build (branch-api).
                    // Pull requests, promotion PRs included: when opened and at each new head commit.
                    buildChangeRequests {
                        ignoreTargetOnlyChanges(true)
                        ignoreUntrustedChanges(true)
                    }
                    // Stage branches but the deploy branch: a push with a commit not by the agents.
                    buildAllBranches {
                        strategies {
                            buildRegularBranches()
                            buildNoneBranches {
                                strategies {
                                    buildNamedBranches {
                                        filters {
                                            exact {
                                                name(deployBranch)
                                                caseSensitive(true)
                                            }
                                        }
                                    }
                                }
                            }
                            skipInitialBuildOnFirstBranchIndexing()
                            ignoreCommitterStrategy {
                                ignoredAuthors(branchmlAuthor)
                                allowBuildIfNotExcludedAuthor(true)
                            }
                        }
                    }
                    // The deploy branch: every push (a promotion PR merged by any method).
                    buildAllBranches {
                        strategies {
                            buildNamedBranches {
                                filters {
                                    exact {
                                        name(deployBranch)
                                        caseSensitive(true)
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
