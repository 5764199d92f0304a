"""Human-readable form of a :func:`spikeforge.reparam.verify` result (markdown tables)."""

from __future__ import annotations

from typing import Any

VIEWS = (("ann", "ANN (same architecture, dense MACs of one step)"),
         ("snn", "pure SNN proxy (every site spiking, same weights)"),
         ("hybrid", "hybrid (layers after a SpikingReLU: dense MACs)"),
         ("hybrid_event_view", "hybrid, multi-level inputs counted as planes"),
         ("converted", "converted (event-driven)"))


def format_report(res: dict[str, Any]) -> str:
    ok = "PASS" if res["exact"] and res["binary_inputs"] else "FAIL"
    lines = [f"verification: {ok}  ({res['samples']} samples, T = {res['time_steps']}, float64)", "",
             f"- max |logit difference|: {res['max_abs_logit_diff']:.3g} (required <= 1e-9)",
             f"- argmax agreement: {res['argmax_agreement']:.6f} (required 1.0)",
             f"- spikes/levels differing from the hybrid: {res['spike_flips']}",
             f"- binary inputs to every synaptic layer: {res['binary_inputs']}"
             + ("" if res["binary_inputs"] else f" (first offending layer: {res['first_non_binary']})")]
    if res["analog_input_layers"]:
        lines.append(f"- analog first layer (costs MACs): {', '.join(res['analog_input_layers'])}")
    if "accuracy" in res:
        acc = (f"- accuracy: converted {100 * res['accuracy']:.2f} %, "
               f"hybrid {100 * res['hybrid_accuracy']:.2f} %")
        if "snn_accuracy" in res:
            acc += f", pure SNN proxy {100 * res['snn_accuracy']:.2f} % (untrained as such)"
        lines.append(acc)
    e = res["energy_model"]
    lines += ["", f"energy per sample (E_AC = {e['e_ac_pj']} pJ, E_MAC = {e['e_mac_pj']} pJ, 45 nm, "
              "Horowitz 2014)",
              "", "| model | SOPs | MACs | energy (uJ) |", "|---|---:|---:|---:|"]
    for key, label in VIEWS:
        if key in res["energy"]:
            v = res["energy"][key]
            lines.append(f"| {label} | {v['sops']:.4g} | {v['macs']:.4g} | {v['energy_pj'] / 1e6:.4g} |")
    lines += ["", "| converted layer | kind | input rate | binary | MACs/step | SOPs | energy (pJ) |",
              "|---|---|---:|---|---:|---:|---:|"]
    for lay in res["layers"]:
        sops = f"{lay['sops']:.4g}" if lay["binary"] else "(dense: MACs)"
        lines.append(f"| {lay['name']} | {lay['kind']} | {lay['rate']:.4f} | {lay['binary']} | "
                     f"{lay['macs_per_step']:.4g} | {sops} | {lay['energy_pj']:.4g} |")
    return "\n".join(lines) + "\n"
