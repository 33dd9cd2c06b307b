"""A charge point built on the Python `ocpp` package (2.1.0) and `websockets`, for the interop
test (tests/interop_python.rs). That library validates every message it sends and receives
against the official OCPP 1.6 schemas, in both directions.

Usage: charge_point.py URL [--ca CA.pem] [--key-hex HEX]

URL is ws:// or wss:// (then the server certificate must chain to --ca). With --key-hex the
charge point authenticates with HTTP Basic auth (security profiles 1 and 2): username = its
identity, password = the key's bytes.

It runs a charging session (BootNotification, Authorize, StatusNotification, StartTransaction,
MeterValues, StopTransaction, Heartbeat), printing one JSON line per answer, then prints
{"event": "ready"} and answers the central system's RemoteStartTransaction and
ChangeConfiguration, printing each, and exits 0 after both. Any failure exits non-zero.
"""

import argparse
import asyncio
import base64
import json
import ssl
from datetime import datetime, timezone

import websockets
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as BaseChargePoint
from ocpp.v16 import call, call_result
from ocpp.v16.enums import (
    Action,
    ChargePointErrorCode,
    ChargePointStatus,
    ConfigurationStatus,
    Reason,
    RemoteStartStopStatus,
)

TIMEOUT = 20


def report(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ChargePoint(BaseChargePoint):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.commands = asyncio.Queue()

    # Answers come from the `on` handlers; the `after` handlers run once the answer is sent.
    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag, **kwargs):
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @after(Action.remote_start_transaction)
    async def after_remote_start(self, id_tag, **kwargs):
        await self.commands.put({"action": "RemoteStartTransaction", "idTag": id_tag})

    @on(Action.change_configuration)
    async def on_change_configuration(self, key, value, **kwargs):
        return call_result.ChangeConfiguration(status=ConfigurationStatus.accepted)

    @after(Action.change_configuration)
    async def after_change_configuration(self, key, value, **kwargs):
        await self.commands.put({"action": "ChangeConfiguration", "key": key, "value": value})


async def session(cp):
    boot = await cp.call(
        call.BootNotification(charge_point_vendor="Interop", charge_point_model="python-ocpp")
    )
    report("BootNotification", status=boot.status, interval=boot.interval)
    auth = await cp.call(call.Authorize(id_tag="TAG-1"))
    report("Authorize", status=auth.id_tag_info["status"])
    await cp.call(
        call.StatusNotification(
            connector_id=1,
            error_code=ChargePointErrorCode.no_error,
            status=ChargePointStatus.preparing,
        )
    )
    report("StatusNotification")
    start = await cp.call(
        call.StartTransaction(connector_id=1, id_tag="TAG-1", meter_start=100, timestamp=now())
    )
    report("StartTransaction", transactionId=start.transaction_id,
           status=start.id_tag_info["status"])
    await cp.call(
        call.MeterValues(
            connector_id=1,
            transaction_id=start.transaction_id,
            meter_value=[
                {
                    "timestamp": now(),
                    "sampled_value": [
                        {"value": "1234.5", "measurand": "Energy.Active.Import.Register",
                         "unit": "Wh", "context": "Sample.Periodic"},
                        {"value": "21.5", "measurand": "Temperature", "unit": "Celsius"},
                    ],
                }
            ],
        )
    )
    report("MeterValues")
    stop = await cp.call(
        call.StopTransaction(
            meter_stop=2000,
            timestamp=now(),
            transaction_id=start.transaction_id,
            id_tag="TAG-1",
            reason=Reason.local,
        )
    )
    report("StopTransaction", idTagInfo=stop.id_tag_info)
    beat = await cp.call(call.Heartbeat())
    report("Heartbeat", currentTime=beat.current_time)

    report("ready")
    for _ in range(2):
        command = await asyncio.wait_for(cp.commands.get(), TIMEOUT)
        report("command", **command)


async def main(url, ca, key_hex):
    identity = url.rstrip("/").rsplit("/", 1)[-1]
    options = {}
    if ca:
        options["ssl"] = ssl.create_default_context(cafile=ca)
    if key_hex:
        user_pass = identity.encode() + b":" + bytes.fromhex(key_hex)
        options["additional_headers"] = {
            "Authorization": "Basic " + base64.b64encode(user_pass).decode()
        }
    async with websockets.connect(
        url, subprotocols=["ocpp1.6"], open_timeout=TIMEOUT, **options
    ) as ws:
        if ws.subprotocol != "ocpp1.6":
            raise SystemExit(f"subprotocol {ws.subprotocol!r} selected")
        cp = ChargePoint(identity, ws, response_timeout=TIMEOUT)
        receiver = asyncio.create_task(cp.start())
        try:
            await asyncio.wait_for(session(cp), 3 * TIMEOUT)
        finally:
            receiver.cancel()
    report("done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--ca")
    parser.add_argument("--key-hex")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.ca, args.key_hex))
