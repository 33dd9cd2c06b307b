"""An OCPP 2.0.1 or 2.1 charging station built on the Python `ocpp` package (2.1.0, its `v201`
or `v21` ChargePoint) and `websockets`, for the interop tests (tests/interop_python_v201.rs,
tests/interop_python_v21.rs). The library validates every message it sends and receives
against the official schemas of the edition, in both directions.

Usage: charging_station.py URL [--edition 2.0.1|2.1] [--offer PROTOCOL ...]

It offers the given subprotocols (default: the edition's), requires the edition's to be
selected, and runs a session: BootNotification, Heartbeat, StatusNotification, Authorize, a
transaction (TransactionEvent Started with its idToken, Updated with a meter value, Ended),
then for 2.0.1 a SecurityEventNotification and a NotifyEvent, for 2.1 what it added:
NotifySettlement (a payment settled), NotifyDERAlarm, OpenPeriodicEventStream,
VatNumberValidation; one JSON line per answer, then {"event": "ready"}. It answers the central
system's GetVariables and, 2.0.1, RequestStartTransaction or, 2.1, GetTariffs, printing each,
and prints {"event": "done"} after both. Any failure exits non-zero.
"""

import argparse
import asyncio
import importlib
import json
from datetime import datetime, timezone

import websockets
from ocpp.routing import after, on

TIMEOUT = 20
SUBPROTOCOLS = {"2.0.1": "ocpp2.0.1", "2.1": "ocpp2.1"}


def report(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def station_class(edition):
    """The ChargePoint of `edition`, answering the central system's commands of the test."""
    module = importlib.import_module("ocpp.v201" if edition == "2.0.1" else "ocpp.v21")
    call_result = module.call_result

    class ChargePoint(module.ChargePoint):
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

        if edition == "2.1":
            @on("GetTariffs")
            async def on_get_tariffs(self, evse_id, **kwargs):
                return call_result.GetTariffs(status="NoTariff")

            @after("GetTariffs")
            async def after_get_tariffs(self, evse_id, **kwargs):
                await self.commands.put({"action": "GetTariffs", "evseId": evse_id})

    return ChargePoint, module.call


async def session(cs, call, edition):
    token = {"id_token": "TAG-201", "type": "ISO14443"}

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
    auth = await cs.call(call.Authorize(id_token=token))
    report("Authorize", status=auth.id_token_info["status"])
    started = await cs.call(
        transaction_event("Started", 0, "Authorized", id_token=token,
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
    if edition == "2.0.1":
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
    else:
        await cs.call(
            call.NotifySettlement(psp_ref="PSP-1", status="Settled", settlement_amount=12.5,
                                  settlement_time=now(), transaction_id="TX-PY-1")
        )
        report("NotifySettlement")
        await cs.call(call.NotifyDERAlarm(control_type="FreqDroop", timestamp=now()))
        report("NotifyDERAlarm")
        opened = await cs.call(
            call.OpenPeriodicEventStream(
                constant_stream_data={"id": 1, "variable_monitoring_id": 7, "params": {"interval": 10}}
            )
        )
        report("OpenPeriodicEventStream", status=opened.status)
        vat = await cs.call(call.VatNumberValidation(vat_number="NL123456789B01"))
        report("VatNumberValidation", status=vat.status, vatNumber=vat.vat_number)

    report("ready")
    for _ in range(2):
        command = await asyncio.wait_for(cs.commands.get(), TIMEOUT)
        report("command", **command)


async def main(url, edition, offers):
    identity = url.rstrip("/").rsplit("/", 1)[-1]
    station, call = station_class(edition)
    async with websockets.connect(url, subprotocols=offers, open_timeout=TIMEOUT) as ws:
        if ws.subprotocol != SUBPROTOCOLS[edition]:
            raise SystemExit(f"subprotocol {ws.subprotocol!r} selected")
        cs = station(identity, ws, response_timeout=TIMEOUT)
        receiver = asyncio.create_task(cs.start())
        try:
            await asyncio.wait_for(session(cs, call, edition), 3 * TIMEOUT)
        finally:
            receiver.cancel()
    report("done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--edition", choices=sorted(SUBPROTOCOLS), default="2.0.1")
    parser.add_argument("--offer", action="append")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.edition, args.offer or [SUBPROTOCOLS[args.edition]]))
