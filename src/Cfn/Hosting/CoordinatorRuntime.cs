using System.Collections.Concurrent;
using Cfn.Coordination;

namespace Cfn.Hosting;

/// <summary>
/// One coordinator (or validator) running in this process: the protocol instance plus the loop that works for it.
/// Disposing it is the graceful stop: the loop stops taking work and gives back what it holds, then the coordinator
/// deletes its own keys.
/// </summary>
internal sealed class CoordinatorRuntime : IAsyncDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _loop;
    private readonly Action<CoordinatorRuntime>? _onStopped;
    private readonly CancellationTokenRegistration _onSuperseded;
    private int _disposed;

    public CoordinatorRuntime(Coordinator coordinator, string role, Func<CancellationToken, Task>? loop,
        Func<IEnumerable<string>>? describe = null, Func<object?>? snapshot = null, Action<CoordinatorRuntime>? onStopped = null,
        Action<CoordinatorRuntime>? onSuperseded = null)
    {
        Coordinator = coordinator;
        Role = role;
        Describe = describe ?? (() => []);
        Snapshot = snapshot ?? (() => null);
        _onStopped = onStopped;
        _loop = loop is null ? Task.CompletedTask : Task.Run(() => loop(_stopping.Token));
        // A superseded instance's work belongs to its successor: whoever runs it decides what happens next.
        _onSuperseded = onSuperseded is null ? default : coordinator.SupersededToken.Register(() => onSuperseded(this));
    }

    public Coordinator Coordinator { get; }

    /// <summary><c>coordinator</c> or <c>validator</c>.</summary>
    public string Role { get; }

    /// <summary>Lines about the loop for the SIGQUIT dump.</summary>
    public Func<IEnumerable<string>> Describe { get; }

    /// <summary>The loop's state for <c>/api/coordinator/state</c>.</summary>
    public Func<object?> Snapshot { get; }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _onSuperseded.DisposeAsync().ConfigureAwait(false);
        await _stopping.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // the normal end of a loop
        }

        await Coordinator.DisposeAsync().ConfigureAwait(false);
        _stopping.Dispose();
        _onStopped?.Invoke(this);
    }
}

/// <summary>The coordinators and validators this process runs now, by ID (endpoints, the dump and shutdown read it).</summary>
internal sealed class LocalCoordinators
{
    private readonly ConcurrentDictionary<string, CoordinatorRuntime> _running = new(StringComparer.Ordinal);

    /// <summary>The coordinator the endpoints act on when no <c>coordinatorId</c> is given (COORDINATOR_ID in <c>serve</c>).</summary>
    public string? PrimaryId { get; set; }

    public IReadOnlyCollection<CoordinatorRuntime> All => [.. _running.Values];

    public IReadOnlyCollection<Coordinator> Coordinators => [.. _running.Values.Select(r => r.Coordinator)];

    public void Add(CoordinatorRuntime runtime) => _running[runtime.Coordinator.Id] = runtime;

    public void Remove(CoordinatorRuntime runtime) => _running.TryRemove(new KeyValuePair<string, CoordinatorRuntime>(runtime.Coordinator.Id, runtime));

    public CoordinatorRuntime? Find(string id) => _running.GetValueOrDefault(id);

    /// <summary>The runtime named by <paramref name="id"/>, else the primary, else the first coordinator (not validator) by ID.</summary>
    public CoordinatorRuntime? Resolve(string? id) =>
        id is not null
            ? Find(id)
            : (PrimaryId is not null ? Find(PrimaryId) : null)
              ?? _running.Values.Where(r => r.Role == "coordinator").OrderBy(r => r.Coordinator.Id, StringComparer.Ordinal).FirstOrDefault();
}
