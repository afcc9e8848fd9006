namespace Cfn.Coordination.Signals;

/// <summary>A signal could not be delivered because Redis failed; nothing is known to have been written.</summary>
public sealed class SignalDeliveryException(string message, Exception inner) : Exception(message, inner);
