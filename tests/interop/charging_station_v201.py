"""An OCPP 2.0.1 charging station built on the Python `ocpp` package (2.1.0, its `v201`
ChargePoint) and `websockets`, for the interop test (tests/interop_python_v201.rs). The library
validates every message it sends and receives against the official 2.0.1 schemas, in both
directions.

Usage: charging_station_v201.py URL [--offer PROTOCOL ...]

It offers the given subprotocols (default: ocpp2.0.1), requires ocpp2.0.1 to be selected, and
runs a session: BootNotification, Heartbeat, StatusNotification, Authorize, a transaction
(TransactionEvent Started with its idToken, Updated with a meter value, Ended), a
SecurityEventNotification and a NotifyEvent, printing one JSON line per answer, then
{"event": "ready"}; it answers the central system's GetVariables and RequestStartTransaction,
printing each, and prints {"event": "done"} after both. Any failure exits non-zero.
"""

import argparse
import asyncio
import json
from datetime import datetime, timezone

import websockets
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint as BaseChargePoint
from ocpp.v201 import call, call_result

TIMEOUT = 20


def report(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


TOKEN = {"id_token": "TAG-201", "type": "ISO14443"}


class ChargePoint(BaseChargePoint):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.commands = asyncio.Queue()

    @on("GetVariables")
    async def on_get_variables(self, get_variable_data, **kwargs):
        return call_result.GetVariables(get_variable_result=[
            {"attribute_status": "Accepted", "attribute_value": "300",
             "component": item["component"], "variable": item["variable"]}
            for item in get_variable_data
        ])

    @after("GetVariables")
    async def after_get_variables(self, get_variable_data, **kwargs):
        await self.commands.put({"action": "GetVariables",
                                 "variable": get_variable_data[0]["variable"]["name"]})

    @on("RequestStartTransaction")
    async def on_request_start(self, id_token, remote_start_id, **kwargs):
        return call_result.RequestStartTransaction(status="Accepted")

    @after("RequestStartTransaction")
    async def after_request_start(self, id_token, remote_start_id, **kwargs):
        await self.commands.put({"action": "RequestStartTransaction",
                                 "idToken": id_token["id_token"]})


def transaction_event(event_type, seq_no, trigger, **extra):
    return call.TransactionEvent(
        event_type=event_type,
        timestamp=now(),
        trigger_reason=trigger,
        seq_no=seq_no,
        transaction_info={"transaction_id": "TX-PY-1", **extra.pop("info", {})},
        evse={"id": 1, "connector_id": 1},
        **extra,
    )


async def session(cs):
    boot = await cs.call(
        call.BootNotification(
            charging_station={"model": "python-ocpp", "vendor_name": "Interop"},
            reason="PowerUp",
        )
    )
    report("BootNotification", status=boot.status, interval=boot.interval)
    beat = await cs.call(call.Heartbeat())
    report("Heartbeat", currentTime=beat.current_time)
    await cs.call(
        call.StatusNotification(
            timestamp=now(), connector_status="Occupied", evse_id=1, connector_id=1
        )
    )
    report("StatusNotification")
    auth = await cs.call(call.Authorize(id_token=TOKEN))
    report("Authorize", status=auth.id_token_info["status"])
    started = await cs.call(
        transaction_event("Started", 0, "Authorized", id_token=TOKEN,
                          info={"charging_state": "Charging"})
    )
    report("TransactionEvent", eventType="Started", idTokenInfo=started.id_token_info)
    meter = [{"timestamp": now(), "sampled_value": [
        {"value": 1234.5, "measurand": "Energy.Active.Import.Register"}]}]
    await cs.call(transaction_event("Updated", 1, "MeterValuePeriodic", meter_value=meter))
    report("TransactionEvent", eventType="Updated")
    await cs.call(
        transaction_event("Ended", 2, "EVCommunicationLost", info={"stopped_reason": "EVDisconnected"})
    )
    report("TransactionEvent", eventType="Ended")
    await cs.call(call.SecurityEventNotification(type="StartupOfTheDevice", timestamp=now()))
    report("SecurityEventNotification")
    await cs.call(
        call.NotifyEvent(
            generated_at=now(),
            seq_no=0,
            event_data=[{
                "event_id": 1, "timestamp": now(), "trigger": "Delta", "actual_value": "Open",
                "event_notification_type": "HardWiredNotification",
                "component": {"name": "Door"}, "variable": {"name": "Problem"},
            }],
        )
    )
    report("NotifyEvent")

    report("ready")
    for _ in range(2):
        command = await asyncio.wait_for(cs.commands.get(), TIMEOUT)
        report("command", **command)


async def main(url, offers):
    identity = url.rstrip("/").rsplit("/", 1)[-1]
    async with websockets.connect(url, subprotocols=offers, open_timeout=TIMEOUT) as ws:
        if ws.subprotocol != "ocpp2.0.1":
            raise SystemExit(f"subprotocol {ws.subprotocol!r} selected")
        cs = ChargePoint(identity, ws, response_timeout=TIMEOUT)
        receiver = asyncio.create_task(cs.start())
        try:
            await asyncio.wait_for(session(cs), 3 * TIMEOUT)
        finally:
            receiver.cancel()
    report("done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--offer", action="append")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.offer or ["ocpp2.0.1"]))
