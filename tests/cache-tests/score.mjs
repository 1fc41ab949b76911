// Summarises a cache-tests results file (the JSON the suite's CLI prints) for Larder.
//
//   CACHE_TESTS_DIR=/path/to/cache-tests node tests/cache-tests/score.mjs results.json [--markdown]
//
// A test's outcome is classified by the suite's own `determineTestResult`
// (test-engine/lib/results.mjs), as cache-tests.fyi does: a result of `true` passes; an array
// `['Assertion', msg]` fails; `['Setup', msg]` is a setup error; `['AbortError', ...]` is a harness
// error; and a test whose `depends_on` tests did not pass counts as a dependency failure even if
// its own result is `true`. Tests without a `kind` are `required`.
//
// Score: passes among the `required` + `optimal` tests that the CLI runs (the `browser_only`
// tests are skipped by the CLI and left out of the total). This is the count cache-tests.fyi's
// published figures correspond to (nginx 158, Varnish 164, Traffic Server 202 of 265).

import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const dir = process.env.CACHE_TESTS_DIR
if (!dir) {
  console.error('score.mjs: set CACHE_TESTS_DIR to a checkout of https://github.com/http-tests/cache-tests')
  process.exit(2)
}
const args = process.argv.slice(2)
const markdown = args.includes('--markdown')
const resultsFile = args.find(a => !a.startsWith('--'))
if (!resultsFile) {
  console.error('usage: score.mjs RESULTS.json [--markdown]')
  process.exit(2)
}

const load = rel => import(pathToFileURL(path.resolve(dir, rel)).href)
const suites = (await load('tests/index.mjs')).default
const { determineTestResult, resultTypes } = await load('test-engine/lib/results.mjs')
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))

const label = new Map([
  [resultTypes.pass, 'pass'],
  [resultTypes.fail, 'fail'],
  [resultTypes.optional_fail, 'fail (optimal)'],
  [resultTypes.yes, 'yes'],
  [resultTypes.no, 'no'],
  [resultTypes.setup_fail, 'SETUP ERROR'],
  [resultTypes.harness_fail, 'HARNESS ERROR'],
  [resultTypes.dependency_fail, 'dependency failed'],
  [resultTypes.retry, 'retried'],
  [resultTypes.untested, 'not run']
])

const oneLine = s => String(s ?? '').replace(/\s+/g, ' ').trim()
const detail = id => {
  const r = results[id]
  if (r === true || r === undefined) return ''
  if (Array.isArray(r)) return oneLine(r.slice(1).join(' '))
  return oneLine(JSON.stringify(r))
}

const allTests = new Map(suites.flatMap(s => s.tests.map(t => [t.id, t])))

let total = 0
let passed = 0
let requiredTotal = 0
let requiredPassed = 0
let rawTrue = 0
let checks = 0
let checksYes = 0
const counts = {}
const failingBySuite = []
for (const suite of suites) {
  const failing = []
  for (const test of suite.tests) {
    if (test.browser_only === true) continue // the CLI does not run these
    const kind = test.kind ?? 'required'
    const outcome = determineTestResult(suites, test.id, results)
    if (kind === 'check') {
      checks++
      if (outcome === resultTypes.yes) checksYes++
      continue
    }
    total++
    if (kind === 'required') requiredTotal++
    if (results[test.id] === true) rawTrue++
    const name = label.get(outcome) ?? 'unknown'
    counts[name] = (counts[name] ?? 0) + 1
    if (outcome === resultTypes.pass) {
      passed++
      if (kind === 'required') requiredPassed++
      continue
    }
    let why = detail(test.id)
    if (outcome === resultTypes.dependency_fail) {
      const broken = (test.depends_on ?? []).filter(d =>
        ![resultTypes.pass, resultTypes.yes].includes(determineTestResult(suites, d, results)))
      const describe = d => {
        const dep = allTests.get(d)
        return `${d} [${dep?.kind ?? 'required'}: ${label.get(determineTestResult(suites, d, results)) ?? 'unknown'}]`
      }
      why = `depends on ${broken.map(describe).join(', ')}; own result: ` +
        (results[test.id] === true ? 'true (would pass)' : why || 'none')
    }
    failing.push({ id: test.id, kind, outcome: name, name: oneLine(test.name), why })
  }
  if (failing.length) failingBySuite.push({ suite, failing })
}

const pct = (a, b) => b ? ` (${Math.round(100 * a / b)}%)` : ''
console.log(`passed ${passed} / ${total} (required+optimal)${pct(passed, total)}`)
console.log(`  required: ${requiredPassed} / ${requiredTotal}; optimal: ${passed - requiredPassed} / ${total - requiredTotal}`)
console.log(`  results exactly \`true\` (ignoring depends_on): ${rawTrue} / ${total}`)
console.log(`  outcomes: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}`)
console.log(`  check tests (informational, not scored): ${checksYes} yes / ${checks}`)
console.log('')
console.log(`failing required/optimal tests (${total - passed}), by test group:`)
for (const { suite, failing } of failingBySuite) {
  console.log('')
  if (markdown) {
    console.log(`### ${suite.name} (\`${suite.id}\`)`)
    console.log('')
    console.log('| id | kind | outcome | test | detail |')
    console.log('|---|---|---|---|---|')
    for (const f of failing) {
      console.log(`| \`${f.id}\` | ${f.kind} | ${f.outcome} | ${f.name.replace(/\|/g, '\\|')} | ${f.why.replace(/\|/g, '\\|')} |`)
    }
  } else {
    console.log(`== ${suite.name} [${suite.id}]`)
    for (const f of failing) {
      console.log(`  ${f.id} (${f.kind}, ${f.outcome})`)
      console.log(`      ${f.name}`)
      if (f.why) console.log(`      -> ${f.why}`)
    }
  }
}
