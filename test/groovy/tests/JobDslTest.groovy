package branchml.tests

import branchml.harness.DslNode
import branchml.harness.JobDslRecorder
import branchml.harness.PipelineHarness
import org.junit.Test

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertNotNull
import static org.junit.Assert.assertTrue

/**
 * jobs/multibranch.groovy against the recording Job DSL: a golden test of the
 * whole generated tree (test/groovy/golden/multibranch.txt; regenerate with
 * BRANCHML_UPDATE_GOLDEN=1) plus the values that must never drift: branch
 * source id, filters, build strategies, script path. And the seed job's
 * pipeline (jobs/seed.groovy) runs exactly that script.
 */
class JobDslTest {
    static final File ROOT = new File(System.getenv('BRANCHML_REPO_ROOT') ?: '.')

    private static DslNode seed() {
        return new JobDslRecorder(ROOT).run(new File(ROOT, 'jobs/multibranch.groovy'))
    }

    @Test
    void generatedJobsMatchTheGolden() {
        String got = seed().render()
        File golden = new File(ROOT, 'test/groovy/golden/multibranch.txt')
        if (System.getenv('BRANCHML_UPDATE_GOLDEN') == '1') {
            golden.text = got
        }
        assertEquals(golden.text, got)
    }

    @Test
    void multibranchJobHasStableSourceFiltersStrategiesAndScriptPath() {
        DslNode root = seed()
        assertEquals(['folder', 'multibranchPipelineJob'], root.children.collect { it.name })
        assertEquals(['ml'], root.children[0].args)
        DslNode job = root.children[1]
        assertEquals(['ml/djia30'], job.args)
        DslNode gh = job.find('branchSources/branchSource/source/github')
        assertNotNull(gh)
        assertEquals('branchml-branchml-djia30', gh.value('id'))
        assertEquals('branchml', gh.value('repoOwner'))
        assertEquals('djia30', gh.value('repository'))
        assertEquals('branchml-github-app', gh.value('credentialsId'))
        assertEquals(3, gh.find('traits/gitHubBranchDiscovery').value('strategyId'))
        assertEquals(2, gh.find('traits/gitHubPullRequestDiscovery').value('strategyId'))
        DslNode filter = gh.find('traits/headWildcardFilter')
        assertEquals('build-components kf-pipeline training deploy-model main ds* PR-*', filter.value('includes'))
        assertEquals('', filter.value('excludes'))

        DslNode all = job.find('branchSource/buildStrategies/buildAllBranches/strategies')
        assertEquals(['buildAnyBranches', 'skipInitialBuildOnFirstBranchIndexing'], all.children.collect { it.name })
        assertEquals(['buildAllBranches', 'buildChangeRequests'],
            all.find('buildAnyBranches/strategies').children.collect { it.name })

        assertEquals('Jenkinsfile', job.find('factory/workflowBranchProjectFactory').value('scriptPath'))
        assertEquals('1d', job.find('triggers/periodicFolderTrigger').value('interval'))
        assertEquals(30, job.find('orphanedItemStrategy/discardOldItems').value('daysToKeep'))
    }

    @Test
    void writeBacksOfTheAgentsDoNotBuildTheirBranchAgain() {
        DslNode any = seed().children[1].find('branchSource/buildStrategies/buildAllBranches/strategies/buildAnyBranches/strategies')
        // Regular branches: only when a pushed commit is not the agents' own
        // (agents/README.md: write-backs are authored by branchml <branchml@localhost>).
        DslNode regular = any.find('buildAllBranches/strategies')
        assertEquals(['buildRegularBranches', 'ignoreCommitterStrategy'], regular.children.collect { it.name })
        DslNode ignore = regular.find('ignoreCommitterStrategy')
        assertEquals('branchml@localhost', ignore.value('ignoredAuthors'))
        assertEquals(true, ignore.value('allowBuildIfNotExcludedAuthor'))
        // Pull requests (also branchml's own promotion PRs) always get their plan build.
        DslNode prs = any.find('buildChangeRequests')
        assertEquals(true, prs.value('ignoreTargetOnlyChanges'))
        assertEquals(true, prs.value('ignoreUntrustedChanges'))
        String readme = new File(ROOT, 'agents/README.md').text
        assertTrue(readme.contains('authored by `branchml <branchml@localhost>`'))
    }

    @Test
    void seedPipelineRunsTheJobDslScripts() {
        PipelineHarness h = new PipelineHarness(ROOT)
        assertEquals('SUCCESS', h.runJenkinsfile(new File(ROOT, 'jobs/seed.groovy')))
        assertEquals([[targets: 'jobs/multibranch.groovy', lookupStrategy: 'SEED_JOB', removedJobAction: 'IGNORE',
                       removedViewAction: 'IGNORE', removedConfigFilesAction: 'IGNORE', sandbox: false]],
            h.callsOf('jobDsl').collect { it.args })
        assertEquals([[name: 'timeout', args: [time: 10, unit: 'MINUTES']], [name: 'disableConcurrentBuilds', args: []],
                      [name: 'buildDiscarder', args: [name: 'logRotator', args: [numToKeepStr: '20']]]],
            h.callsOf('pipeline')[0].args.options)
    }
}
