namespace Cfn.Coordination.Signals;

/// <summary>
/// A signal could not be delivered; nothing was written. <see cref="Reason"/> says why, with the value counted in
/// <c>signals_failed_total{reason}</c>: Redis failed (<see cref="RedisError"/>), the receiver's inbox is full
/// (<see cref="InboxFull"/>), the receiver was declared dead and no replacement is coming (<see cref="ReceiverDead"/>),
/// or redirects to replacements did not end (<see cref="TooManyRedirects"/>).
/// </summary>
public sealed class SignalDeliveryException : Exception
{
    /// <summary>Redis failed or timed out.</summary>
    public const string RedisError = "redis_error";

    /// <summary>The receiver's inbox holds <c>SIGNAL_INBOX_MAX_LENGTH</c> pending signals already.</summary>
    public const string InboxFull = "inbox_full";

    /// <summary>The receiver was declared dead and its escalation failed: nobody will read the signal.</summary>
    public const string ReceiverDead = "receiver_dead";

    /// <summary>Every replacement the signal was redirected to had been declared dead too, more times than allowed.</summary>
    public const string TooManyRedirects = "too_many_redirects";

    /// <summary>A Redis failure.</summary>
    public SignalDeliveryException(string message, Exception inner)
        : base(message, inner)
    {
        Reason = RedisError;
    }

    /// <summary>A refusal by the receiver's side (<paramref name="reason"/> is one of the constants).</summary>
    public SignalDeliveryException(string message, string reason, string receiverId)
        : base(message)
    {
        Reason = reason;
        ReceiverId = receiverId;
    }

    /// <summary>One of <see cref="RedisError"/>, <see cref="InboxFull"/>, <see cref="ReceiverDead"/>, <see cref="TooManyRedirects"/>.</summary>
    public string Reason { get; }

    /// <summary>The receiver that refused the signal (null for a Redis failure).</summary>
    public string? ReceiverId { get; }
}
