// The shared client-session vectors (tests/vectors/client_session.json) against SignalingClient,
// on the fake socket and clock. tests/unit/test_client_vectors.py runs the same file against the
// Python SDK's pure session, so both SDKs follow one set of rules.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { BackpressureError, closeAction } from '../switchboard.js';
import { harness, welcome } from './fakes.mjs';

const VECTORS = JSON.parse(readFileSync(new URL('../../tests/vectors/client_session.json', import.meta.url), 'utf8'));

describe('close code → action (vectors)', () => {
  for (const [code, action] of VECTORS.close_actions) {
    test(`close ${code}: ${action}`, () => assert.equal(closeAction(code), action));
  }
});

/** Plays one session of the vectors against a client on fakes. */
class Driver {
  constructor(options) {
    this.h = harness({ ackEvery: options.ack_every, ackDelayMs: options.ack_delay_ms, maxUnconfirmed: options.max_unconfirmed });
    this.ws = null;
    /** index in ws.sent where the current connection's own frames start (after join) */
    this.resent = [];
  }

  unconfirmed() {
    return this.h.client._unconfirmed.map((entry) => entry.cseq);
  }

  async step(step) {
    const { h } = this;
    if (step.wait) h.clock.advance(step.wait);
    if ('welcome' in step) {
      if (this.ws === null) {
        h.client.connect();
        this.ws = h.socket();
        this.ws.open();
      }
      const before = h.events.length;
      const sentBefore = this.ws.sent.length;
      this.ws.receive(welcome({ ...step.welcome, resumed: step.welcome.resumed ?? false }));
      const kinds = h.events.slice(before).map(([type]) => type).filter((t) => ['joined', 'resumed', 'rejoined'].includes(t));
      assert.deepEqual(kinds, [step.expect]);
      this.resent = this.ws.sent.slice(sentBefore).filter((m) => typeof m.cseq === 'number').map((m) => m.cseq);
      if ('expect_dropped' in step) assert.equal(h.ofType('rejoined').at(-1).dropped, step.expect_dropped);
    } else if ('receive' in step) {
      const seq = step.receive;
      const signals = h.ofType('signal').length;
      this.ws.receive({ type: 'signal', seq, from: 'p_b', data: seq });
      const accepted = h.ofType('signal').length > signals;
      const dropped = this.ws.closedWith !== null;
      const verdict = accepted ? 'accept' : dropped ? 'gap' : 'duplicate';
      assert.equal(verdict, step.expect);
    } else if ('send' in step) {
      if (step.expect === 'window-full') {
        assert.throws(() => h.client.send(step.send), BackpressureError);
      } else {
        assert.equal(h.client.send(step.send), step.expect_cseq);
      }
    } else if ('ping' in step) {
      this.ws.receive({ type: 'ping', ...step.ping });
      if ('expect_pong' in step) assert.deepEqual(this.ws.ofType('pong').at(-1), step.expect_pong);
    } else if ('close' in step) {
      const before = h.events.length;
      if (typeof step.close === 'string') {
        this.ws.receive({ type: 'reconnect', mode: step.close.replace('reconnect:', ''), delay_ms: 0 });
      } else if (step.close === null) {
        if (this.ws.closedWith === null) this.ws.serverClose(1006); // the link died
      } else {
        this.ws.serverClose(step.close);
      }
      const ended = h.events.slice(before).filter(([type]) => type === 'reconnecting' || type === 'closed');
      // A gap already ended the connection in the step before.
      const outcome = ended.length ? ended.at(-1)[1] : h.ofType('reconnecting').at(-1);
      assert.equal(outcome.action, step.expect_action);
      if (h.client.state !== 'closed') {
        h.clock.advance(outcome.delayMs);
        this.ws = h.socket();
        this.ws.open();
        if ('expect_resume' in step) assert.deepEqual(this.ws.sent[0].resume ?? null, step.expect_resume);
      }
    }
    if ('expect_acks' in step) assert.deepEqual(this.ws.ofType('ack').map((m) => m.seq), step.expect_acks);
    if ('expect_last_seq' in step) assert.equal(h.client.lastSeq, step.expect_last_seq);
    if ('expect_unconfirmed' in step) assert.deepEqual(this.unconfirmed(), step.expect_unconfirmed);
    if ('expect_resent' in step) assert.deepEqual(this.resent, step.expect_resent);
  }
}

describe('client session (vectors)', () => {
  for (const session of VECTORS.sessions) {
    test(session.name, async () => {
      const driver = new Driver(VECTORS.options);
      for (const [index, step] of session.steps.entries()) {
        try {
          await driver.step(step);
        } catch (error) {
          throw new Error(`step ${index}: ${JSON.stringify(step)}\n${error instanceof Error ? error.message : error}`);
        }
      }
    });
  }
});
