using Cfn.Coordination.Signals;

namespace Cfn.Coordination.Acks;

/// <summary>What <see cref="AckWaiter.SendAndWaitAsync"/> returns: the send's result and the wait's.</summary>
/// <param name="Delivery">As <see cref="SignalSender.SendAsync"/> would have returned it.</param>
/// <param name="Wait">As <see cref="AckWaiter.WaitForAcksAsync(IEnumerable{string}, string, TimeSpan?, CancellationToken)"/> would have returned it.</param>
public sealed record SendAndWaitResult(SignalDeliveryResult Delivery, AckWaitResult Wait);
