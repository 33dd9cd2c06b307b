// An OCPP 2.0.1 charging station built on npm `ocpp-rpc` (2.x) in strict mode: the library
// validates every request and response against the official 2.0.1 schemas both ways, and
// answers a message of ours that breaks one with a CALLERROR instead of taking it. For the
// interop test (tests/interop_ocpp_rpc_v201.rs).
//
// Usage: node ocpp_rpc_v201.js URL IDENTITY
//
// Runs BootNotification, Heartbeat, StatusNotification, Authorize and a transaction (Started,
// Updated, Ended), printing one JSON line per answer, then {"event":"ready"}; answers the
// central system's Reset (printing it) and exits 0 after it. Any failure exits non-zero.
const { RPCClient } = require('ocpp-rpc');

const [url, identity] = process.argv.slice(2);
const report = (event, fields = {}) => console.log(JSON.stringify({ event, ...fields }));
const now = () => new Date().toISOString();

async function main() {
    const cli = new RPCClient({
        endpoint: url,
        identity,
        protocols: ['ocpp2.0.1'],
        strictMode: true,
        reconnect: false,
    });
    const reset = new Promise((resolve) => {
        cli.handle('Reset', ({ params }) => {
            resolve(params);
            return { status: 'Accepted' };
        });
    });
    await cli.connect();
    if (cli.protocol !== 'ocpp2.0.1') {
        throw new Error(`subprotocol ${cli.protocol} selected`);
    }
    const boot = await cli.call('BootNotification', {
        reason: 'PowerUp',
        chargingStation: { model: 'ocpp-rpc', vendorName: 'Interop' },
    });
    report('BootNotification', { status: boot.status, interval: boot.interval });
    const beat = await cli.call('Heartbeat', {});
    report('Heartbeat', { currentTime: beat.currentTime });
    await cli.call('StatusNotification', {
        timestamp: now(), connectorStatus: 'Occupied', evseId: 1, connectorId: 1,
    });
    report('StatusNotification');
    const token = { idToken: 'TAG-RPC', type: 'ISO14443' };
    const auth = await cli.call('Authorize', { idToken: token });
    report('Authorize', { status: auth.idTokenInfo.status });
    const events = [
        ['Started', 'Authorized', { idToken: token }],
        ['Updated', 'MeterValuePeriodic', {
            meterValue: [{ timestamp: now(), sampledValue: [{ value: 1500.5 }] }],
        }],
        ['Ended', 'EVCommunicationLost', {}],
    ];
    for (const [seqNo, [eventType, triggerReason, extra]] of events.entries()) {
        const answer = await cli.call('TransactionEvent', {
            eventType, timestamp: now(), triggerReason, seqNo,
            transactionInfo: { transactionId: 'TX-RPC-1' },
            evse: { id: 1, connectorId: 1 },
            ...extra,
        });
        report('TransactionEvent', { eventType, idTokenInfo: answer.idTokenInfo || null });
    }
    report('ready');
    const params = await reset;
    report('Reset', { type: params.type });
    await cli.close({ code: 1000 });
    report('done');
}

main().then(
    () => process.exit(0),
    (err) => {
        console.error(err && err.stack ? err.stack : String(err));
        process.exit(1);
    },
);
