package branchml.tests

import branchml.harness.BuildStrategies
import branchml.harness.Catalog
import branchml.harness.DslCheck
import branchml.harness.DslNode
import branchml.harness.JobDslRecorder
import branchml.harness.PipelineHarness
import org.junit.Test

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertFalse
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

        assertEquals(['buildChangeRequests', 'buildAllBranches', 'buildAllBranches'],
            job.find('branchSource/buildStrategies').children.collect { it.name })
        assertEquals('Jenkinsfile', job.find('factory/workflowBranchProjectFactory').value('scriptPath'))
        assertEquals('1d', job.find('triggers/periodicFolderTrigger').value('interval'))
        assertEquals(30, job.find('orphanedItemStrategy/discardOldItems').value('daysToKeep'))
    }

    private static final String A = 'a' * 40, B = 'b' * 40

    /** Whether Jenkins builds the head of event, by the seeded job's build strategies. */
    private static boolean builds(Map event) {
        DslNode strategies = seed().children[1].find('branchSource/buildStrategies')
        return BuildStrategies.build(strategies, [changeRequest: false, tag: false] + event)
    }

    @Test
    void pullRequestsGetTheirPlanBuildWhenOpenedPromotionPRsToo() {
        // Opened (a webhook or a scan discovers it: never seen before).
        assertTrue(builds([name: 'PR-7', changeRequest: true, current: A, lastSeen: null, lastBuilt: null, authors: ['ds@example.com']]))
        // The train stage's promotion PR: every commit is the agents'.
        assertTrue(builds([name: 'PR-8', changeRequest: true, current: A, lastSeen: null, lastBuilt: null, authors: ['branchml@localhost']]))
        // A new head commit.
        assertTrue(builds([name: 'PR-7', changeRequest: true, current: B, lastSeen: A, lastBuilt: A, authors: ['ds@example.com']]))
        // Only its target moved.
        assertFalse(builds([name: 'PR-7', changeRequest: true, current: B, lastSeen: A, lastBuilt: A, targetOnly: true]))
        // A fork's PR by an untrusted author.
        assertFalse(builds([name: 'PR-9', changeRequest: true, current: A, lastSeen: null, trusted: false]))
    }

    @Test
    void stageBranchesBuildOnAPushButNotOnTheAgentsWriteBacksNorWhenFirstDiscovered() {
        assertTrue(builds([name: 'training', current: B, lastSeen: A, lastBuilt: A, authors: ['ds@example.com']]))
        assertTrue(builds([name: 'training', current: B, lastSeen: A, lastBuilt: A, authors: ['branchml@localhost', 'ds@example.com']]))
        assertFalse(builds([name: 'training', current: B, lastSeen: A, lastBuilt: A, authors: ['branchml@localhost']]))
        assertFalse(builds([name: 'build-components', current: B, lastSeen: A, lastBuilt: A, authors: ['BranchML@localhost']]))
        // First seen (a new job, or re-seeding): no build of every branch.
        assertFalse(builds([name: 'training', current: A, lastSeen: null, lastBuilt: null, authors: ['ds@example.com']]))
        assertFalse(builds([name: 'ds1', current: A, lastSeen: null, lastBuilt: null, authors: ['ds@example.com']]))
        assertFalse(builds([name: 'training', current: A, lastSeen: A, lastBuilt: A, authors: []]))
    }

    @Test
    void theDeployBranchBuildsWhateverTheMergeMethodOfThePromotionPR() {
        // Rebase merge: every commit keeps the agents as author.
        assertTrue(builds([name: 'deploy-model', current: B, lastSeen: A, lastBuilt: A, authors: ['branchml@localhost']]))
        // Merge commit or squash: the merger is the author.
        assertTrue(builds([name: 'deploy-model', current: B, lastSeen: A, lastBuilt: A, authors: ['ops@example.com']]))
        // Not when first discovered.
        assertFalse(builds([name: 'deploy-model', current: A, lastSeen: null, lastBuilt: null, authors: ['ops@example.com']]))
        // The deploy stage's own write-backs build it too: branchmlPipeline skips
        // them (BranchmlPipelineTest.aPushOfOnlyTheStagesOwnWriteBacksRunsNothing).
        assertTrue(builds([name: 'deploy-model', current: B, lastSeen: A, lastBuilt: A, authors: ['branchml@localhost']]))
    }

    @Test
    void theAgentsAuthorIsTheWriteBacksAuthor() {
        DslNode ignore = seed().children[1].find('branchSource/buildStrategies/buildAllBranches/strategies/ignoreCommitterStrategy')
        assertEquals('branchml@localhost', ignore.value('ignoredAuthors'))
        assertEquals(true, ignore.value('allowBuildIfNotExcludedAuthor'))
        String readme = new File(ROOT, 'agents/README.md').text
        assertTrue(readme.contains('authored by `branchml <branchml@localhost>`'))
    }

    @Test
    void everyDescribableAndParameterIsInThePinnedPlugins() {
        assertEquals([], DslCheck.check(seed(), Catalog.of(ROOT)))
        // The check is not vacuous: a strategy of a plugin not in plugins.txt fails.
        DslNode bad = seed()
        bad.children[1].find('branchSource/buildStrategies').children << new DslNode('buildNoneBranchesEver', [])
        DslNode wrongParam = seed()
        wrongParam.children[1].find('branchSource/buildStrategies/buildChangeRequests').children << new DslNode('ignoreDrafts', [true])
        assertEquals(['multibranchPipelineJob/branchSources/branchSource/buildStrategies/buildNoneBranchesEver: buildNoneBranchesEver is no describable of the plugins in plugins.txt'],
            DslCheck.check(bad, Catalog.of(ROOT)))
        assertTrue(DslCheck.check(wrongParam, Catalog.of(ROOT))[0].contains('ignoreDrafts is no parameter of jenkins.branch.buildstrategies.basic.ChangeRequestBuildStrategyImpl'))
    }

    @Test
    void seedPipelineRunsTheJobDslScripts() {
        PipelineHarness h = new PipelineHarness(ROOT)
        assertEquals('SUCCESS', h.runJenkinsfile(new File(ROOT, 'jobs/seed.groovy')))
        assertEquals([[targets: 'jobs/multibranch.groovy', lookupStrategy: 'SEED_JOB', removedJobAction: 'IGNORE',
                       removedViewAction: 'IGNORE', removedConfigFilesAction: 'IGNORE', sandbox: false]],
            h.callsOf('jobDsl').collect { it.args })
        assertEquals([kubernetes: [defaultContainer: 'jnlp']], h.callsOf('pipeline')[0].args.agent)
        assertEquals([[name: 'timeout', args: [time: 10, unit: 'MINUTES']], [name: 'disableConcurrentBuilds', args: []],
                      [name: 'buildDiscarder', args: [name: 'logRotator', args: [numToKeepStr: '20']]]],
            h.callsOf('pipeline')[0].args.options)
    }
}
